package qemulaunch

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// fakeMonitor is a scripted QMP monitor: run answers commands, block makes
// Connect or Run hang until Disconnect (a wedged QEMU).
type fakeMonitor struct {
	connectBlocks bool
	run           func(cmd []byte) ([]byte, error)
	events        chan qmp.Event
	gone          chan struct{}
	once          sync.Once
}

var _ qmpMonitor = (*fakeMonitor)(nil)

func newFake() *fakeMonitor {
	return &fakeMonitor{events: make(chan qmp.Event), gone: make(chan struct{})}
}

func (f *fakeMonitor) Connect() error {
	if f.connectBlocks {
		<-f.gone
		return errors.New("closed")
	}
	return nil
}

func (f *fakeMonitor) Disconnect() error {
	f.once.Do(func() { close(f.gone); close(f.events) })
	return nil
}

func (f *fakeMonitor) Run(cmd []byte) ([]byte, error) {
	if f.run == nil {
		<-f.gone
		return nil, errors.New("closed")
	}
	return f.run(cmd)
}

func (f *fakeMonitor) Events(context.Context) (<-chan qmp.Event, error) { return f.events, nil }

func TestQMPRunTimesOut(t *testing.T) {
	f := newFake() // Run never answers
	m, err := connectMonitor(bg(), f, 100*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t0 := time.Now()
	_, err = m.status(bg())
	if !errors.Is(err, ErrQMPTimeout) {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(t0); d > time.Second {
		t.Errorf("took %v", d)
	}
	if _, err := m.status(bg()); !errors.Is(err, ErrQMPClosed) {
		t.Errorf("after timeout: %v, want ErrQMPClosed", err)
	}
}

func TestQMPConnectTimesOut(t *testing.T) {
	f := newFake()
	f.connectBlocks = true
	ctx, cancel := context.WithTimeout(bg(), 50*time.Millisecond)
	defer cancel()
	if _, err := connectMonitor(ctx, f, time.Second); !errors.Is(err, ErrQMPTimeout) {
		t.Fatalf("err = %v", err)
	}
}

func TestQMPStatusAndEvents(t *testing.T) {
	f := newFake()
	f.run = func(cmd []byte) ([]byte, error) {
		return []byte(`{"return":{"running":true,"singlestep":false,"status":"some-future-state"}}`), nil
	}
	m, err := connectMonitor(bg(), f, time.Second)
	if err != nil {
		t.Fatal(err)
	}
	st, err := m.status(bg())
	if err != nil || !st.Running || st.Status != "some-future-state" {
		t.Fatalf("status = %+v, %v (unknown states must decode)", st, err)
	}
	ch, unsub := m.subscribe()
	defer unsub()
	// Nobody reads the first events quickly: the drain must not stall.
	for _, e := range []string{"RESUME", "POWERDOWN", "SHUTDOWN", "STOP"} {
		f.events <- qmp.Event{Event: e, Data: map[string]any{"reason": "guest-shutdown"}}
	}
	if ev := <-ch; ev.Event != "RESUME" {
		t.Errorf("first event %s", ev.Event)
	}
	if s := m.shutdownEvent(); s == nil || s.Data["reason"] != "guest-shutdown" {
		t.Errorf("shutdown event = %+v", s)
	}
	ctx, cancel := context.WithCancel(bg())
	cancel()
	if _, err := m.status(ctx); err == nil || errors.Is(err, ErrQMPTimeout) {
		t.Errorf("cancelled ctx: %v; want not sent", err)
	}
	if _, err := m.status(bg()); err != nil {
		t.Errorf("connection unusable after a cancelled call: %v", err)
	}
	m.close()
}
