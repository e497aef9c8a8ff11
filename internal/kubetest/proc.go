package kubetest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Process is one program the harness started, recorded so that any process
// can stop it later: by PID, after checking that PID still runs a command
// line containing Marker (an argument only this instance has).
type Process struct {
	Name   string `json:"name"`
	PID    int    `json:"pid"`
	Marker string `json:"marker"`
	Log    string `json:"log"`

	done   chan struct{} // closed when the starting process has reaped it
	status string        // how it ended, once done is closed
}

// startProcess starts argv in its own session with stdout and stderr
// appended to logPath. marker must appear in argv.
func startProcess(name string, argv []string, marker, logPath string) (*Process, error) {
	if !strings.Contains(strings.Join(argv, "\x00"), marker) {
		return nil, fmt.Errorf("kubetest: %s: marker %q not in its command line", name, marker)
	}
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("kubetest: start %s: %w", name, err)
	}
	p := &Process{Name: name, PID: cmd.Process.Pid, Marker: marker, Log: logPath, done: make(chan struct{})}
	go func() {
		err := cmd.Wait()
		p.status = "exit status 0"
		if err != nil {
			p.status = err.Error()
		}
		close(p.done)
	}()
	return p, nil
}

// Running reports whether the process still runs (not a zombie, and its
// PID not reused by another program).
func (p *Process) Running() bool {
	return p.exited() == ""
}

// exited says why the process counts as gone, or "" while it runs.
func (p *Process) exited() string {
	if p.done != nil {
		// Started here: the Wait goroutine knows. /proc would mislead for
		// a moment after Start, while the kernel is still laying out the
		// new program: its cmdline then reads empty.
		select {
		case <-p.done:
			return p.status
		default:
			return ""
		}
	}
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "cmdline"))
	if err != nil {
		return err.Error()
	}
	if !strings.Contains(string(raw), p.Marker) {
		return fmt.Sprintf("pid %d runs %.80q", p.PID, strings.ReplaceAll(string(raw), "\x00", " "))
	}
	stat, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(p.PID), "stat"))
	if err != nil {
		return err.Error()
	}
	// The state follows the parenthesised command name.
	if i := strings.LastIndexByte(string(stat), ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
		return "a zombie"
	}
	return ""
}

// ours reports whether this process started p and has not reaped it: it
// is then certainly p, whatever /proc says.
func (p *Process) ours() bool {
	if p.done == nil {
		return false
	}
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Stop sends SIGTERM, waits up to grace, then SIGKILL. Stopping a process
// that is gone is not an error.
func (p *Process) Stop(grace time.Duration) error {
	if !p.Running() && !p.ours() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kubetest: stop %s (pid %d): %w", p.Name, p.PID, err)
	}
	if p.wait(grace) {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kubetest: kill %s (pid %d): %w", p.Name, p.PID, err)
	}
	if !p.wait(10 * time.Second) {
		return fmt.Errorf("kubetest: %s (pid %d) survived SIGKILL", p.Name, p.PID)
	}
	return nil
}

func (p *Process) wait(d time.Duration) bool {
	gone := func() bool { return !p.Running() && !p.ours() }
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if gone() {
			return true
		}
		time.Sleep(50 * time.Millisecond)
	}
	return gone()
}

// LogTail returns the last n bytes of the process's log.
func (p *Process) LogTail(n int) string {
	raw, _ := os.ReadFile(p.Log)
	return tailString(string(raw), n)
}
