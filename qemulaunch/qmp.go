package qemulaunch

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/digitalocean/go-qemu/qmp"
)

// ErrQMPTimeout is returned when QEMU's monitor does not answer in time.
// The monitor connection is closed afterwards (a late reply could otherwise
// be taken as the answer to the next command).
var ErrQMPTimeout = errors.New("qemulaunch: QMP monitor did not answer in time")

// ErrQMPClosed is returned for commands after the monitor connection ended
// (QEMU exited, or an earlier command timed out).
var ErrQMPClosed = errors.New("qemulaunch: QMP connection closed")

// Event is a QMP event, e.g. SHUTDOWN, POWERDOWN, STOP, RESUME.
type Event = qmp.Event

// qmpMonitor is the part of go-qemu's qmp.Monitor this package uses.
type qmpMonitor interface {
	Connect() error
	Disconnect() error
	Run(command []byte) ([]byte, error)
	Events(context.Context) (<-chan qmp.Event, error)
}

var _ qmpMonitor = (*qmp.SocketMonitor)(nil)

// monitor wraps a go-qemu monitor with the deadlines go-qemu lacks (its
// Connect and Run block forever on a wedged QEMU) and drains its event
// stream continuously (go-qemu's reader stalls Run while an event waits).
type monitor struct {
	mon     qmpMonitor
	timeout time.Duration

	mu       sync.Mutex
	closed   bool
	subs     map[chan Event]struct{}
	shutdown *Event // first SHUTDOWN event seen
	gone     chan struct{}
	closeOne sync.Once
}

// dialQMP waits for QEMU's QMP socket to appear and connects, all within
// timeout. QEMU creates the socket shortly after exec; the file is watched
// with a short poll (there is nothing to subscribe to before it exists).
func dialQMP(ctx context.Context, path string, timeout, cmdTimeout time.Duration, exited <-chan struct{}) (*monitor, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	delay := 2 * time.Millisecond
	for {
		if _, err := os.Stat(path); err == nil {
			sm, err := qmp.NewSocketMonitor("unix", path, timeout)
			if err == nil {
				m, err := connectMonitor(ctx, sm, cmdTimeout)
				if err == nil {
					return m, nil
				}
				return nil, err
			}
		}
		select {
		case <-exited:
			return nil, fmt.Errorf("QEMU exited before its QMP socket %s came up", path)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w: no QMP socket at %s after %v", ErrQMPTimeout, path, timeout)
		case <-time.After(delay):
		}
		delay = min(delay*2, 50*time.Millisecond)
	}
}

// connectMonitor performs the QMP greeting and capabilities handshake under
// ctx and starts draining events.
func connectMonitor(ctx context.Context, mon qmpMonitor, cmdTimeout time.Duration) (*monitor, error) {
	errc := make(chan error, 1)
	go func() { errc <- mon.Connect() }()
	select {
	case err := <-errc:
		if err != nil {
			mon.Disconnect()
			return nil, fmt.Errorf("QMP handshake: %w", err)
		}
	case <-ctx.Done():
		mon.Disconnect() // unblocks Connect
		if err := <-errc; err == nil {
			mon.Disconnect() // it connected just before: drain its reader
		}
		return nil, fmt.Errorf("%w: QMP greeting not received", ErrQMPTimeout)
	}
	events, err := mon.Events(context.Background())
	if err != nil {
		mon.Disconnect()
		return nil, fmt.Errorf("QMP events: %w", err)
	}
	m := &monitor{mon: mon, timeout: cmdTimeout, subs: map[chan Event]struct{}{}, gone: make(chan struct{})}
	go m.drain(events)
	return m, nil
}

// drain consumes every event; it ends when the connection does.
func (m *monitor) drain(events <-chan qmp.Event) {
	for ev := range events {
		m.mu.Lock()
		if ev.Event == "SHUTDOWN" && m.shutdown == nil {
			e := ev
			m.shutdown = &e
		}
		for ch := range m.subs {
			select {
			case ch <- ev:
			default: // a slow subscriber loses events, never stalls QMP
			}
		}
		m.mu.Unlock()
	}
	m.closeOne.Do(func() { close(m.gone) })
}

// subscribe returns a channel receiving events from now on.
func (m *monitor) subscribe() (<-chan Event, func()) {
	ch := make(chan Event, 32)
	m.mu.Lock()
	m.subs[ch] = struct{}{}
	m.mu.Unlock()
	return ch, func() {
		m.mu.Lock()
		delete(m.subs, ch)
		m.mu.Unlock()
	}
}

// shutdownEvent returns the first SHUTDOWN event, if any.
func (m *monitor) shutdownEvent() *Event {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.shutdown
}

// run executes one QMP command, bounded by ctx and the per-command timeout.
// out, when not nil, receives the "return" member.
func (m *monitor) run(ctx context.Context, cmd string, args any, out any) error {
	m.mu.Lock()
	closed := m.closed
	m.mu.Unlock()
	if closed {
		return fmt.Errorf("%s: %w", cmd, ErrQMPClosed)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("QMP %s not sent: %w", cmd, err) // the connection stays usable
	}
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	raw, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	type result struct {
		b   []byte
		err error
	}
	resc := make(chan result, 1)
	go func() {
		b, err := m.mon.Run(raw)
		resc <- result{b, err}
	}()
	select {
	case r := <-resc:
		if r.err != nil {
			return fmt.Errorf("QMP %s: %w", cmd, r.err)
		}
		if out != nil {
			var env struct {
				Return json.RawMessage `json:"return"`
			}
			if err := json.Unmarshal(r.b, &env); err != nil {
				return fmt.Errorf("QMP %s: reply: %w", cmd, err)
			}
			if err := json.Unmarshal(env.Return, out); err != nil {
				return fmt.Errorf("QMP %s: reply: %w", cmd, err)
			}
		}
		return nil
	case <-ctx.Done():
		m.close() // the connection is out of sync now; Run returns once closed
		<-resc
		return fmt.Errorf("QMP %s: %w", cmd, ErrQMPTimeout)
	}
}

// Status is QEMU's run state as query-status reports it: "running",
// "paused", "shutdown", "prelaunch", "guest-panicked", … (kept a string so
// a newer QEMU's states do not break decoding).
type Status struct {
	Running bool   `json:"running"`
	Status  string `json:"status"`
}

func (m *monitor) status(ctx context.Context) (Status, error) {
	var s Status
	err := m.run(ctx, "query-status", nil, &s)
	return s, err
}

// close disconnects; safe to call more than once.
func (m *monitor) close() {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return
	}
	m.closed = true
	m.mu.Unlock()
	m.mon.Disconnect()
	<-m.gone
}
