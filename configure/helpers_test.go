package configure

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/peertest"
)

// lesson is a throw-away lesson directory.
type lesson struct {
	t   *testing.T
	dir string
}

func newLesson(t *testing.T) *lesson {
	t.Helper()
	return &lesson{t: t, dir: t.TempDir()}
}

// config writes stage<stage>/configs/<name> and returns its path.
func (l *lesson) config(stage int, name, content string) string {
	l.t.Helper()
	p := filepath.Join(l.dir, "stage"+string(rune('0'+stage)), "configs", name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		l.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// sshTarget is a target for user u on s, host keys pinned from s.
func sshTarget(name string, s *peertest.SSHD, u *peertest.User, l *lesson, stages ...endpoint.StageConfig) Target {
	return Target{
		Name: name, Address: s.Host, Port: s.Port, User: u.Name, Password: Secret(u.Password),
		HostKeys: HostKeyPolicy{Pinned: s.HostKeys}, LessonDir: l.dir, Stages: stages,
	}
}

func stage0(m endpoint.Method, file string) endpoint.StageConfig {
	return endpoint.StageConfig{Stage: 0, Method: m, File: file}
}

// capture is a slog logger writing into a buffer, for secret checks.
type capture struct {
	mu  chan struct{}
	buf bytes.Buffer
}

func newCapture() (*capture, *slog.Logger) {
	c := &capture{mu: make(chan struct{}, 1)}
	return c, slog.New(slog.NewTextHandler(c, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func (c *capture) Write(p []byte) (int, error) {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	return c.buf.Write(p)
}

func (c *capture) String() string {
	c.mu <- struct{}{}
	defer func() { <-c.mu }()
	return c.buf.String()
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// noSecret fails if secret appears in any of texts.
func noSecret(t *testing.T, secret string, texts ...string) {
	t.Helper()
	for _, s := range texts {
		if strings.Contains(s, secret) {
			t.Errorf("secret leaked into %q", s)
		}
	}
}
