package imagebuild

import (
	"bytes"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"
)

// TestProgressOnTerminal: on a terminal, steps and long-running output
// are shown; elsewhere only the logger hears of them.
func TestProgressOnTerminal(t *testing.T) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Skipf("no pty: %v", err)
	}
	defer ptmx.Close()
	defer tty.Close()
	var logs bytes.Buffer
	p := newProgress(tty, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if p.tty == nil {
		t.Fatal("a pty was not recognised as a terminal")
	}
	p.Step("debootstrap bookworm")
	lw := p.Lines("debootstrap")
	io.WriteString(lw, "I: Retrieving Packages\nI: Validating Packages\n")
	lw.Close()
	got := make([]byte, 4096)
	ptmx.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, _ := ptmx.Read(got)
	if !strings.Contains(string(got[:n]), "debootstrap bookworm") {
		t.Errorf("terminal shows %q; want the step", got[:n])
	}
	if !strings.Contains(logs.String(), "I: Validating Packages") {
		t.Errorf("log lacks the command output: %s", logs.String())
	}

	var quiet bytes.Buffer
	q := newProgress(&quiet, slog.New(slog.DiscardHandler))
	q.Step("x")
	if q.tty != nil || quiet.Len() != 0 {
		t.Errorf("non-terminal writer got output %q", quiet.String())
	}
}
