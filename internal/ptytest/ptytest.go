// Package ptytest drives programs on a real pseudo-terminal in tests, as a
// person at a terminal would: start a command with the terminal as its
// controlling terminal (or take a bare terminal pair), type, wait for what
// it prints, and read the screen it leaves — with lines redrawn in place
// (carriage return, cursor up, erase line) applied as a terminal does.
//
//	term := ptytest.Start(t, exec.Command(bin, "console", "r1"))
//	term.Expect(t, `login: $`, time.Minute)
//	term.Send("antidote\r")
package ptytest

import (
	"bytes"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/creack/pty"
)

// Term is one pseudo-terminal: its master side, read in the background.
type Term struct {
	// TTY is the terminal side (the slave) for Open; nil for Start, where
	// the command has it.
	TTY  *os.File
	ptmx *os.File
	cmd  *exec.Cmd

	mu   sync.Mutex
	out  bytes.Buffer
	mark int // Expect looks after this offset
	eof  chan struct{}
}

// Size is the window every Term gets.
var Size = pty.Winsize{Rows: 40, Cols: 120}

// Open returns a bare terminal pair; both sides are closed when the test
// ends.
func Open(tb testing.TB) *Term {
	tb.Helper()
	ptmx, tty, err := pty.Open()
	if err != nil {
		tb.Fatalf("ptytest: %v", err)
	}
	pty.Setsize(ptmx, &Size)
	t := newTerm(ptmx)
	t.TTY = tty
	tb.Cleanup(func() { tty.Close(); ptmx.Close() })
	return t
}

// Start starts cmd on a new terminal, as its stdin, stdout, stderr and
// controlling terminal. When the test ends, a command still running is
// killed.
func Start(tb testing.TB, cmd *exec.Cmd) *Term {
	tb.Helper()
	ptmx, err := pty.StartWithSize(cmd, &Size)
	if err != nil {
		tb.Fatalf("ptytest: start %s: %v", cmd.Path, err)
	}
	t := newTerm(ptmx)
	t.cmd = cmd
	tb.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
		ptmx.Close()
	})
	return t
}

func newTerm(ptmx *os.File) *Term {
	t := &Term{ptmx: ptmx, eof: make(chan struct{})}
	go func() {
		defer close(t.eof)
		buf := make([]byte, 4096)
		for {
			n, err := ptmx.Read(buf)
			t.mu.Lock()
			t.out.Write(buf[:n])
			t.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	return t
}

// Send types s (use "\r" for Enter, "\x1d" for Ctrl-]).
func (t *Term) Send(tb testing.TB, s string) {
	tb.Helper()
	if _, err := t.ptmx.Write([]byte(s)); err != nil {
		tb.Fatalf("ptytest: type %q: %v", s, err)
	}
}

// Expect waits until the output after the previous match matches re and
// returns the match; past timeout it fails the test, showing the output.
func (t *Term) Expect(tb testing.TB, re string, timeout time.Duration) string {
	tb.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(timeout)
	for {
		t.mu.Lock()
		rest := t.out.Bytes()[t.mark:]
		if loc := rx.FindIndex(rest); loc != nil {
			m := string(rest[loc[0]:loc[1]])
			t.mark += loc[1]
			t.mu.Unlock()
			return m
		}
		t.mu.Unlock()
		select {
		case <-t.eof:
			if t.matchesNow(rx) {
				continue
			}
			tb.Fatalf("ptytest: the terminal closed before %q appeared; output after the last match:\n%s", re, t.rest())
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			tb.Fatalf("ptytest: %q did not appear within %v; output after the last match:\n%s", re, timeout, t.rest())
		}
	}
}

func (t *Term) matchesNow(rx *regexp.Regexp) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return rx.Match(t.out.Bytes()[t.mark:])
}

func (t *Term) rest() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()[t.mark:]
}

// Output returns everything the terminal showed so far, raw.
func (t *Term) Output() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.out.String()
}

// Wait waits for the command of Start to end (bounded by timeout) and
// returns its exit code; the output is read to its end.
func (t *Term) Wait(tb testing.TB, timeout time.Duration) int {
	tb.Helper()
	done := make(chan error, 1)
	go func() { done <- t.cmd.Wait() }()
	select {
	case <-done:
	case <-time.After(timeout):
		t.cmd.Process.Kill()
		tb.Fatalf("ptytest: %s still running after %v; output:\n%s", t.cmd.Path, timeout, t.Output())
	}
	select { // the rest of the output; the master reads EIO once no one holds the terminal
	case <-t.eof:
	case <-time.After(2 * time.Second):
	}
	return t.cmd.ProcessState.ExitCode()
}

// Screen returns the lines a terminal would show after the output so far:
// it applies carriage returns, newlines, cursor up (ESC [ n A), erase line
// (ESC [ 2K, ESC [ K) and drops colours and other escape sequences. Trailing
// blanks are trimmed.
func (t *Term) Screen() []string {
	return Render(t.Output())
}

// csi matches the escape sequences Render knows (and the ones it drops).
var csi = regexp.MustCompile(`^\x1b\[([0-9;?]*)([A-Za-z])`)

// Render is Screen for a given output.
func Render(out string) []string {
	lines := [][]rune{{}}
	row, col := 0, 0
	put := func(r rune) {
		for len(lines[row]) < col {
			lines[row] = append(lines[row], ' ')
		}
		if col < len(lines[row]) {
			lines[row][col] = r
		} else {
			lines[row] = append(lines[row], r)
		}
		col++
	}
	for i := 0; i < len(out); {
		if m := csi.FindStringSubmatch(out[i:]); m != nil {
			i += len(m[0])
			n, _ := strconv.Atoi(m[1])
			switch m[2] {
			case "A":
				row = max(row-max(n, 1), 0)
			case "K":
				if m[1] == "2" {
					lines[row] = lines[row][:0]
				} else if col < len(lines[row]) {
					lines[row] = lines[row][:col]
				}
			}
			continue
		}
		r, size := utf8.DecodeRuneInString(out[i:])
		i += size
		switch r {
		case '\r':
			col = 0
		case '\n':
			row++
			col = 0
			if row == len(lines) {
				lines = append(lines, []rune{})
			}
		case '\x1b', '\a':
		default:
			put(r)
		}
	}
	var s []string
	for _, l := range lines {
		s = append(s, strings.TrimRight(string(l), " "))
	}
	for len(s) > 0 && s[len(s)-1] == "" {
		s = s[:len(s)-1]
	}
	return s
}
