package endpointkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
)

// logInstance is an instance record whose endpoint r1 has logs but no
// running launcher.
func logInstance(t *testing.T) *Instance {
	t.Helper()
	dir := t.TempDir()
	sd := qemulaunch.StateDir(filepath.Join(dir, "r1"))
	os.MkdirAll(string(sd), 0o755)
	os.WriteFile(sd.ConsoleLog()+".1", []byte("old boot\n"), 0o644)
	os.WriteFile(sd.ConsoleLog(), []byte("endpointkit: ready\nr1 login: "), 0o644)
	os.WriteFile(filepath.Join(dir, "r1.log"), []byte("endpoint r1: QEMU started\nendpoint r1: ready in 2.1s\n"), 0o644)
	return &Instance{Name: "tri", Dir: dir, Endpoints: []RunningEndpoint{{Name: "r1", StateDir: string(sd),
		ConsoleSocket: sd.ConsoleSocket(), Log: filepath.Join(dir, "r1.log")}, {Name: "r2"}}}
}

func TestLogs(t *testing.T) {
	inst := logInstance(t)
	ctx := context.Background()
	for _, tc := range []struct {
		o    LogOptions
		want string
	}{
		{LogOptions{}, "old boot\nendpointkit: ready\nr1 login: "},
		{LogOptions{Lines: 1}, "r1 login: "},
		{LogOptions{Source: LogLauncher, Lines: 1}, "endpoint r1: ready in 2.1s\n"},
		// Following an endpoint whose launcher is gone prints what there is and ends.
		{LogOptions{Source: LogLauncher, Follow: true}, "endpoint r1: QEMU started\nendpoint r1: ready in 2.1s\n"},
	} {
		var out bytes.Buffer
		if err := inst.WriteLog(ctx, "r1", &out, tc.o); err != nil || out.String() != tc.want {
			t.Errorf("Logs(%+v) = %q, %v; want %q", tc.o, out.String(), err, tc.want)
		}
	}
	err := inst.WriteLog(ctx, "r9", io.Discard, LogOptions{})
	if err == nil || !strings.Contains(err.Error(), `no endpoint "r9" (endpoints: r1, r2)`) {
		t.Errorf("unknown endpoint: %v", err)
	}
	if err := inst.WriteLog(ctx, "r1", io.Discard, LogOptions{Source: "qemu"}); err == nil || !strings.Contains(err.Error(), "console or launcher") {
		t.Errorf("unknown source: %v", err)
	}
	err = inst.WriteLog(ctx, "r2", io.Discard, LogOptions{})
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "no console log") {
		t.Errorf("no log: %v", err)
	}
}

func TestConsole(t *testing.T) {
	inst := logInstance(t)
	ctx := context.Background()
	// Not running: fails at once, saying so.
	t0 := time.Now()
	_, err := inst.Console(ctx, "r1")
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "r1 is down") || time.Since(t0) > 2*time.Second {
		t.Errorf("console of a stopped endpoint: %v after %v; want ErrNotRunning at once", err, time.Since(t0))
	}
	// A running launcher (a stand-in whose command line names the state
	// directory, as a launcher's does) that says its guest is ready.
	sd := qemulaunch.StateDir(inst.Endpoints[0].StateDir)
	fake := exec.Command("sh", "-c", "sleep 60; :", string(sd)) // "; :" keeps sh from exec-ing sleep
	if err := fake.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { fake.Process.Kill(); fake.Wait() }()
	inst.Endpoints[0].PID = fake.Process.Pid
	os.WriteFile(sd.Health(), []byte(qemulaunch.HealthReady+"\n"), 0o644)
	for deadline := time.Now().Add(5 * time.Second); !qemulaunch.LauncherRunning(fake.Process.Pid, string(sd)); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the stand-in launcher does not show as running")
		}
	}
	// A console socket: the connection reaches it both ways.
	l, err := net.Listen("unix", inst.Endpoints[0].ConsoleSocket)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		c, err := l.Accept()
		if err != nil {
			return
		}
		c.Write([]byte("r1 login: "))
		io.Copy(c, c) // echo
	}()
	conn, err := inst.Console(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte("antidote\r"))
	buf := make([]byte, 64)
	got := ""
	for !strings.Contains(got, "antidote") {
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read: %v (got %q)", err, got)
		}
		got += string(buf[:n])
	}
	if !strings.HasPrefix(got, "r1 login: ") {
		t.Errorf("console said %q", got)
	}
}

// A runtime without LogWriter: the tails of Runtime.Logs, no follow.
func TestWriteLogOtherRuntime(t *testing.T) {
	inst := &Instance{Name: "k", Endpoints: []RunningEndpoint{{Name: "b"}}, rt: &fakeRuntime{}}
	var out bytes.Buffer
	if err := inst.WriteLog(context.Background(), "b", &out, LogOptions{Source: LogLauncher}); err != nil || out.String() != "launcher of b" {
		t.Errorf("WriteLog = %q, %v", out.String(), err)
	}
	if err := inst.WriteLog(context.Background(), "b", &out, LogOptions{Follow: true}); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("follow: %v", err)
	}
}

// stoppingRuntime is a fakeRuntime whose endpoints run until told.
type stoppingRuntime struct {
	fakeRuntime
	mu      sync.Mutex
	running map[string]bool
}

func (s *stoppingRuntime) Observe(_ context.Context, ep RunningEndpoint) Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Observation{Running: s.running[ep.Name]}
}

func (s *stoppingRuntime) stop(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.running[name] = false
}

// Teardown's per-endpoint progress: each running endpoint stopping, then
// stopped as soon as the runtime no longer sees it; one not running is
// reported so at once; the rest when the removal succeeded.
func TestWatchStops(t *testing.T) {
	rt := &stoppingRuntime{running: map[string]bool{"r1": true, "r3": true}}
	inst := &Instance{Endpoints: []RunningEndpoint{{Name: "r1"}, {Name: "r2"}, {Name: "r3"}}}
	var mu sync.Mutex
	var events []string
	rep := reporter{fn: func(e Event) {
		mu.Lock()
		defer mu.Unlock()
		events = append(events, string(e.Step)+" "+e.Message)
	}, start: time.Now()}
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), events...)
	}
	stopped := watchStops(context.Background(), rt, inst, rep)
	rt.stop("r1")
	deadline := time.Now().Add(5 * time.Second)
	for len(seen()) < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	stopped(true)
	want := []string{"teardown r1 stopping", "stopped r2: not running", "teardown r3 stopping", "stopped r1 stopped", "stopped r3 stopped"}
	if got := seen(); strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	watchStops(context.Background(), rt, nil, rep)(true) // no record: nothing, no panic
}
