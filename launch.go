package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// LauncherName is the launcher binary's name (cmd/endpoint).
const LauncherName = "endpoint"

// tailBytes is how much of a console or log an error quotes.
const tailBytes = 3000

// FindLauncher returns the endpoint launcher to run: path when given (it
// must exist), else "endpoint" beside the running executable (where `make`
// puts both binaries), else "endpoint" on PATH. The error wraps
// ErrNoLauncher and says how to get one.
func FindLauncher(path string) (string, error) {
	if path != "" {
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			return "", fmt.Errorf("%w: %s: not a file (build it: go build -o %s ./cmd/endpoint)", ErrNoLauncher, path, path)
		}
		return filepath.Abs(path)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), LauncherName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(LauncherName); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%w: no %q beside this program or on PATH (`make build` puts it in bin/, or go build -o DIR/endpoint ./cmd/endpoint)", ErrNoLauncher, LauncherName)
}

// forwards are the guest ports an endpoint exposes on its management
// address: the lesson's (presentations, additionalPorts), then the image's
// management APIs and readiness ports, which configuration and readiness
// need even when the lesson does not present them. Host port = guest port:
// every endpoint has its own management address.
func forwards(ep endpoint.Endpoint, m vmimage.Manifest) []Port {
	seen := map[int]bool{}
	var ports []Port
	add := func(p int) {
		if p > 0 && p <= 65535 && !seen[p] {
			seen[p] = true
			ports = append(ports, Port{Guest: p, Host: p, Proto: "tcp"})
		}
	}
	for _, p := range ep.Ports {
		add(p)
	}
	extra := append([]int{m.APIs.SSH, m.APIs.NETCONF}, m.APIs.HTTP...)
	extra = append(extra, m.Readiness.SSHPorts...)
	extra = append(extra, m.Readiness.TCPPorts...)
	sort.Ints(extra)
	for _, p := range extra {
		add(p)
	}
	return ports
}

// launcherArgs is the `endpoint run` command line of one endpoint.
func launcherArgs(ep endpoint.Endpoint, rec Endpoint, lessonDir string, accel qemulaunch.Accel, grace time.Duration) []string {
	fw := make([]string, len(rec.Ports))
	for k, p := range rec.Ports {
		fw[k] = strconv.Itoa(p.Guest)
	}
	macs := []string{"eth0=" + ep.ManagementMAC.String()}
	for _, it := range ep.Interfaces {
		macs = append(macs, it.Name+"="+it.MAC.String())
	}
	return []string{"run",
		"--image", rec.ImageDir,
		"--lesson", lessonDir,
		"--name", ep.Name,
		"--state", rec.StateDir,
		"--forward", strings.Join(fw, ","),
		"--accel", string(accel),
		"--interfaces", strconv.Itoa(len(ep.Interfaces)),
		"--macs", strings.Join(macs, ","),
		"--grace", grace.String(),
	}
}

// launcherCmd prepares the launcher process: its own session (a Ctrl-C
// on the terminal that ran `lesson up` does not reach it), output to its
// log file, nothing on stdin.
func launcherCmd(bin string, args []string, accel qemulaunch.Accel, log *os.File) *exec.Cmd {
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.Env = append(os.Environ(), qemulaunch.AccelEnv+"="+string(accel))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	return cmd
}

// waitReady polls the launcher's health file until it says ready, the
// launcher exits (exited is closed), or the deadline passes.
func waitReady(ctx context.Context, rec Endpoint, exited <-chan struct{}, timeout time.Duration) error {
	sd := qemulaunch.StateDir(rec.StateDir)
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	check := func() (bool, error) {
		state, detail, err := qemulaunch.ReadHealth(sd)
		switch {
		case err != nil:
			return false, nil
		case state == qemulaunch.HealthReady:
			return true, nil
		case state == qemulaunch.HealthFailed:
			return false, bootError(rec, detail)
		case state == qemulaunch.HealthStopped || state == qemulaunch.HealthStopping:
			return false, bootError(rec, "the VM stopped while booting")
		}
		return false, nil
	}
	for {
		if ok, err := check(); ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			if ok, err := check(); ok || err != nil {
				return err
			}
			return bootError(rec, "the launcher exited before the guest was ready")
		case <-deadline.C:
			return bootError(rec, fmt.Sprintf("not ready after %v", timeout))
		case <-tick.C:
		}
	}
}

// bootError describes a failed boot with the console and log tails.
func bootError(rec Endpoint, reason string) *BootError {
	return &BootError{Endpoint: rec.Name, Reason: reason,
		Console: tail(qemulaunch.StateDir(rec.StateDir).ConsoleLog(), tailBytes),
		Log:     tail(rec.Log, tailBytes), LogFile: rec.Log}
}

// tail returns up to n bytes from the end of a file, starting at a line.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}

// processAlive reports whether pid runs and its command line mentions
// marker (guarding against a reused pid).
func processAlive(pid int, marker string) bool {
	if pid <= 0 {
		return false
	}
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(raw), marker) {
		return false
	}
	return !zombie(pid) && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// zombie reports whether pid has exited and only awaits its parent's wait
// (state Z in /proc/PID/stat).
func zombie(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i >= 0 && i+2 < len(st) && st[i+2] == 'Z'
}
