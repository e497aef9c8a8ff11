package qemulaunch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// SelfTestError is a self-test of an image that did not pass: it exited
// non-zero (ExitCode), or could not be run (ExitCode -1, Err says why).
type SelfTestError struct {
	Image    string // the image's slug
	Name     string // the test's name
	ExitCode int
	Output   string // stdout and stderr, tail
	Err      error
}

func (e *SelfTestError) Error() string {
	if e.ExitCode < 0 {
		return fmt.Sprintf("image %s: self-test %q could not run: %v", e.Image, e.Name, e.Err)
	}
	return fmt.Sprintf("image %s: self-test %q exited %d; its output:\n%s", e.Image, e.Name, e.ExitCode, e.Output)
}

// Unwrap returns the underlying error (an *ssh.ExitError for a non-zero
// exit).
func (e *SelfTestError) Unwrap() error { return e.Err }

// SelfTestResult is one self-test that passed.
type SelfTestResult struct {
	Name    string
	Elapsed time.Duration
}

// selfTestOutputBytes is how much of a failing test's output its error
// quotes.
const selfTestOutputBytes = 4000

// RunSelfTests runs the image's self-tests (Manifest.Tests) in order over
// SSH at addr as the image's SSH user, each as `sh -ec SCRIPT` in its own
// session, with the manifest's host keys pinned. It stops at the first
// failure, a *SelfTestError with the test's output and exit code.
func RunSelfTests(ctx context.Context, addr string, m vmimage.Manifest) ([]SelfTestResult, error) {
	if len(m.Tests) == 0 {
		return nil, nil
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &SelfTestError{Image: m.Slug, Name: m.Tests[0].Name, ExitCode: -1, Err: err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{User: m.Users.SSHUser,
		Auth: []ssh.AuthMethod{ssh.Password(m.Users.SSHPassword)}, HostKeyCallback: HostKeyCallback(m.HostKeys)})
	if err != nil {
		conn.Close()
		return nil, &SelfTestError{Image: m.Slug, Name: m.Tests[0].Name, ExitCode: -1, Err: err}
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	var done []SelfTestResult
	for _, t := range m.Tests {
		start := time.Now()
		out, code, err := runScript(client, t.Run)
		if err == nil && code == 0 {
			done = append(done, SelfTestResult{Name: t.Name, Elapsed: time.Since(start)})
			continue
		}
		if ctx.Err() != nil {
			err = ctx.Err()
		}
		if len(out) > selfTestOutputBytes {
			out = "…" + out[len(out)-selfTestOutputBytes:]
		}
		return done, &SelfTestError{Image: m.Slug, Name: t.Name, ExitCode: code, Output: out, Err: err}
	}
	return done, nil
}

// runScript runs script with sh -ec in a new session and returns its
// combined output and exit code (-1 when it did not exit normally).
func runScript(c *ssh.Client, script string) (string, int, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", -1, err
	}
	defer s.Close()
	var out lockedBuffer
	s.Stdout, s.Stderr = &out, &out
	err = s.Run("sh -ec " + text.ShellQuote(script))
	var ee *ssh.ExitError
	switch {
	case err == nil:
		return out.String(), 0, nil
	case errors.As(err, &ee):
		return out.String(), ee.ExitStatus(), err
	}
	return out.String(), -1, err
}

// lockedBuffer is a bytes.Buffer safe for an SSH session's stdout and
// stderr copiers, which write from two goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
