package endpointkit

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	return &Instance{Name: "tri", Dir: dir, Endpoints: []Endpoint{{Name: "r1", StateDir: string(sd),
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
		if err := inst.Logs(ctx, "r1", &out, tc.o); err != nil || out.String() != tc.want {
			t.Errorf("Logs(%+v) = %q, %v; want %q", tc.o, out.String(), err, tc.want)
		}
	}
	err := inst.Logs(ctx, "r9", io.Discard, LogOptions{})
	if err == nil || !strings.Contains(err.Error(), `no endpoint "r9" (endpoints: r1, r2)`) {
		t.Errorf("unknown endpoint: %v", err)
	}
	if err := inst.Logs(ctx, "r1", io.Discard, LogOptions{Source: "qemu"}); err == nil || !strings.Contains(err.Error(), "console or launcher") {
		t.Errorf("unknown source: %v", err)
	}
	err = inst.Logs(ctx, "r2", io.Discard, LogOptions{})
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
	if err == nil || !strings.Contains(err.Error(), "endpoint down") || time.Since(t0) > 2*time.Second {
		t.Errorf("console of a stopped endpoint: %v after %v", err, time.Since(t0))
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

func TestEndpointIn(t *testing.T) {
	marker := "/run/endpointkit/tri/"
	for cmdline, want := range map[string]string{
		"/usr/bin/endpoint\x00run\x00--state\x00/run/endpointkit/tri/r1\x00--name\x00r1": "r1",
		"qemu-system-x86_64\x00-qmp\x00unix:/run/endpointkit/tri/r22/qmp.sock,server=on": "r22",
		"qemu-system-x86_64\x00-name\x00x":                                               "",
	} {
		if got := endpointIn(cmdline, marker); got != want {
			t.Errorf("endpointIn(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// Teardown's per-endpoint progress: each endpoint stopping, then stopped
// as its processes go; one without any is reported as not running.
func TestStopProgress(t *testing.T) {
	var events []string
	sp := &stopProgress{rep: reporter{fn: func(e Event) { events = append(events, string(e.Step)+" "+e.Message) }}, names: []string{"r1", "r2", "r3"}}
	self := os.Getpid() // a live process that is no zombie
	sp.begin([]instanceProcess{{pid: self, launcher: true, endpoint: "r1"}, {pid: self, endpoint: "r1"}, {pid: self, endpoint: "r3"}})
	sp.observe([]instanceProcess{{pid: self, endpoint: "r3"}})
	sp.observe(nil)
	sp.observe(nil)
	want := []string{"teardown r1 stopping", "stopped r2: not running", "teardown r3 stopping", "stopped r1 stopped", "stopped r3 stopped"}
	if strings.Join(events, "|") != strings.Join(want, "|") {
		t.Errorf("events:\n%s\nwant:\n%s", strings.Join(events, "\n"), strings.Join(want, "\n"))
	}
	var nilProgress *stopProgress
	nilProgress.begin(nil) // a nil one reports nothing and does not panic
	nilProgress.observe(nil)
}
