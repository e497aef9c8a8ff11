package imagebuild

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"
)

// A build VM is a QEMU guest the builder itself runs: an installer
// writing the disk, or the bake boot of a disk image. It runs under TCG
// with multi-threaded TCG on two vCPUs (the build is the only guest that
// matters while it runs), QEMU user networking, the serial console
// captured, and -no-reboot: a guest that reboots or powers off ends QEMU.

// ErrBuildVM: a build-time guest (installer, bake boot) did not finish as
// expected; the *BuildVMError says how, with the console's tail.
var ErrBuildVM = errors.New("build VM failed")

// BuildVMError is a build-time guest that failed: it stopped at an
// installer question (Question), never printed its marker before the
// deadline, or QEMU failed.
type BuildVMError struct {
	What     string // "install", "bake boot"
	Question string // the installer question it stopped at, if any
	Msg      string
	Console  string // the last lines of the serial console
}

func (e *BuildVMError) Error() string {
	s := e.What + ": " + e.Msg
	if e.Question != "" {
		s += fmt.Sprintf(": the installer is waiting for an answer to %q (answer it in the answer file)", e.Question)
	}
	return s + "\nconsole tail:\n" + e.Console
}

// Is makes errors.Is(err, ErrBuildVM) true.
func (e *BuildVMError) Is(target error) bool { return target == ErrBuildVM }

// buildVMArgs are the QEMU options every build VM shares.
func buildVMArgs(memMiB int) []string {
	return []string{"-machine", "pc", "-accel", "tcg,thread=multi", "-cpu", DefaultTCGCPU, "-smp", "2",
		"-m", fmt.Sprint(memMiB), "-nodefaults", "-no-user-config", "-display", "none",
		"-serial", "stdio", "-no-reboot"}
}

// buildVM is a running build-time guest.
type buildVM struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error // QEMU's exit, once done is closed

	mu      sync.Mutex
	console bytes.Buffer
	changed time.Time // last console output
}

func (v *buildVM) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.changed = time.Now()
	return v.console.Write(p)
}

// text returns the console so far and when it last changed.
func (v *buildVM) text() (string, time.Time) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String(), v.changed
}

// startBuildVM starts QEMU with args; log gets every console line too.
func startBuildVM(args []string, log *lineWriter) (*buildVM, error) {
	if _, err := exec.LookPath("qemu-system-x86_64"); err != nil {
		return nil, fmt.Errorf("imagebuild: a build VM needs qemu-system-x86_64: %w (run `make deps`)", ErrMissingTool)
	}
	v := &buildVM{done: make(chan struct{}), changed: time.Now()}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	if log != nil {
		v.cmd.Stdout = teeWriter{v, log}
	} else {
		v.cmd.Stdout = v
	}
	v.cmd.Stderr = v.cmd.Stdout
	v.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := v.cmd.Start(); err != nil {
		return nil, fmt.Errorf("imagebuild: start qemu: %w", err)
	}
	go func() {
		v.err = v.cmd.Wait()
		close(v.done)
	}()
	return v, nil
}

type teeWriter struct {
	a, b interface{ Write([]byte) (int, error) }
}

func (t teeWriter) Write(p []byte) (int, error) {
	t.b.Write(p)
	return t.a.Write(p)
}

// kill stops QEMU and waits for it.
func (v *buildVM) kill() {
	select {
	case <-v.done:
	default:
		v.cmd.Process.Kill()
		<-v.done
	}
}

// vmWatch says what a build VM waits for.
type vmWatch struct {
	what string
	// marker, when set, is the console line that means done; without it
	// the guest powering off (QEMU exiting 0) is done.
	marker *regexp.Regexp
	// deadline bounds the whole run.
	deadline time.Duration
	// stuck, when set, finds an installer question the guest is waiting
	// at; a question with no console output for quiet fails the run.
	stuck func(console string) string
	quiet time.Duration
}

// wait waits for w's end: the marker, or QEMU exiting by itself (the
// guest powered off). It kills QEMU on every failure and returns a
// *BuildVMError with the console's tail.
func (v *buildVM) wait(ctx context.Context, w vmWatch) error {
	fail := func(question, format string, a ...any) error {
		v.kill()
		con, _ := v.text()
		return &BuildVMError{What: w.what, Question: question, Msg: fmt.Sprintf(format, a...), Console: consoleTail(con, 30)}
	}
	deadline := time.NewTimer(w.deadline)
	defer deadline.Stop()
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		con, changed := v.text()
		if w.marker != nil && w.marker.MatchString(con) {
			return nil
		}
		if w.stuck != nil {
			if q := w.stuck(con); q != "" && time.Since(changed) > w.quiet {
				return fail(q, "stopped at a question for %s", w.quiet)
			}
		}
		select {
		case <-v.done:
			con, _ := v.text()
			switch {
			case w.marker != nil && w.marker.MatchString(con):
				return nil
			case v.err != nil:
				return fail("", "qemu: %v", v.err)
			case w.marker != nil:
				return fail("", "the guest powered off without printing %q", w.marker)
			}
			return nil
		case <-ctx.Done():
			return fail("", "%v", ctx.Err())
		case <-deadline.C:
			msg := "not done after " + w.deadline.String()
			if w.marker != nil {
				msg = fmt.Sprintf("no %q on the console after %s", w.marker, w.deadline)
			}
			return fail("", "%s", msg)
		case <-tick.C:
		}
	}
}

// ansiRE matches terminal control sequences (the installer draws its
// screens with them).
var ansiRE = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|[()][0-9A-Za-z]|[=>78])`)

// plainConsole strips control sequences and carriage returns.
func plainConsole(s string) string {
	s = ansiRE.ReplaceAllString(s, "")
	return strings.ReplaceAll(s, "\r", "\n")
}

// consoleTail is the last n non-empty lines of a console, without
// control sequences and the installer's GNU screen status bar.
func consoleTail(s string, n int) string {
	var lines []string
	for _, l := range strings.Split(screenBarRE.ReplaceAllString(plainConsole(s), ""), "\n") {
		if strings.TrimSpace(l) != "" {
			lines = append(lines, strings.TrimRight(l, " "))
		}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// removeOnError removes path when *err is set (a deferred cleanup).
func removeOnError(err *error, path string) {
	if *err != nil {
		os.Remove(path)
	}
}
