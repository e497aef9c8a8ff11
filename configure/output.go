package configure

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailSize is how much output a Result or Step keeps.
const tailSize = 4096

// tailBuffer keeps the last max bytes written to it; safe for concurrent
// writers.
type tailBuffer struct {
	mu      sync.Mutex
	max     int
	b       []byte
	dropped bool
}

func newTail(max int) *tailBuffer { return &tailBuffer{max: max} }

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > 2*t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
		t.dropped = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return tail(string(t.b), t.max, t.dropped)
}

func tail(s string, max int, dropped bool) string {
	if len(s) > max {
		s, dropped = s[len(s)-max:], true
	}
	if dropped {
		if i := strings.IndexByte(s, '\n'); i >= 0 && i < len(s)-1 {
			s = s[i+1:]
		}
		s = "…\n" + s
	}
	return s
}

// redact replaces every non-empty secret in s.
func redact(s string, secrets []string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, "REDACTED")
		}
	}
	return s
}

// redactedError hides secrets in an error's text while keeping its chain
// for errors.Is and errors.As.
type redactedError struct {
	err     error
	secrets []string
}

func (e *redactedError) Error() string { return redact(e.err.Error(), e.secrets) }
func (e *redactedError) Unwrap() error { return e.err }

func redactErr(err error, secrets []string) error {
	for _, s := range secrets {
		if s != "" && strings.Contains(err.Error(), s) {
			return &redactedError{err, secrets}
		}
	}
	return err
}

// runLocal runs cmd, made by exec.CommandContext, until it exits or ctx
// ends, when its whole process group is killed. Output goes to out unless
// the caller set Stdout/Stderr; a non-zero exit is an [*ExitError].
func runLocal(ctx context.Context, cmd *exec.Cmd, name string, out *tailBuffer) error {
	if cmd.Stdout == nil {
		cmd.Stdout = out
	}
	if cmd.Stderr == nil {
		cmd.Stderr = out
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 2 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return &ExitError{Command: name, Status: ee.ExitCode(), Output: out.String()}
	}
	if err != nil {
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}
