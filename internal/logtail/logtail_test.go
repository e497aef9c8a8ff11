package logtail

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestLastLines(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"a\nb\nc\n", 2, "b\nc\n"},
		{"a\nb\nc\n", 3, "a\nb\nc\n"},
		{"a\nb\nc\n", 9, "a\nb\nc\n"},
		{"a\nb\nlogin: ", 1, "login: "},
		{"a\nb\nlogin: ", 2, "b\nlogin: "},
		{"a\n\n\n", 2, "\n\n"},
		{"", 3, ""},
		{"x\n", 0, ""},
	} {
		if got := string(LastLines([]byte(tc.in), tc.n)); got != tc.want {
			t.Errorf("LastLines(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestCopyHead(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "console.log")
	writeFile(t, log+".1", "one\ntwo\nthree\n")
	writeFile(t, log, "four\nfive\nr1 login: ")
	// A tail longer than one read block, to cross block boundaries.
	long := filepath.Join(dir, "long.log")
	var b strings.Builder
	for i := range 20000 {
		b.WriteString(strings.Repeat("x", i%7) + "\n")
	}
	writeFile(t, long, b.String())
	for _, tc := range []struct {
		path, rotated string
		lines         int
		want          string
	}{
		{log, log + ".1", 0, "one\ntwo\nthree\nfour\nfive\nr1 login: "},
		{log, log + ".1", 2, "five\nr1 login: "},
		{log, log + ".1", 4, "three\nfour\nfive\nr1 login: "},
		{log, log + ".1", 99, "one\ntwo\nthree\nfour\nfive\nr1 login: "},
		{log, "", 0, "four\nfive\nr1 login: "},
		{log, filepath.Join(dir, "absent"), 9, "four\nfive\nr1 login: "},
		{long, "", 15000, string(LastLines([]byte(b.String()), 15000))},
	} {
		var out bytes.Buffer
		if err := Copy(context.Background(), &out, tc.path, Options{Lines: tc.lines, Rotated: tc.rotated}); err != nil {
			t.Fatal(err)
		}
		if out.String() != tc.want {
			t.Errorf("%s lines %d: got %d bytes %q…, want %d bytes", filepath.Base(tc.path), tc.lines, out.Len(), firstBytes(out.String()), len(tc.want))
		}
	}
	err := Copy(context.Background(), &bytes.Buffer{}, filepath.Join(dir, "none"), Options{})
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing log: %v", err)
	}
}

func firstBytes(s string) string {
	if len(s) > 40 {
		return s[:40]
	}
	return s
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func (s *syncBuffer) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.HasSuffix(s.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output %q does not end in %q", s.String(), want)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Following survives appends, a rotation (rename to .1, new file), a
// truncation (a restarted writer), and ends when the writer is done,
// with what it wrote last.
func TestCopyFollow(t *testing.T) {
	dir := t.TempDir()
	log := filepath.Join(dir, "console.log")
	writeFile(t, log, "boot\n")
	var done atomic.Bool
	var out syncBuffer
	ended := make(chan error, 1)
	go func() {
		ended <- Copy(context.Background(), &out, log, Options{Rotated: log + ".1", Follow: true, Done: done.Load, Poll: 10 * time.Millisecond})
	}()
	out.waitFor(t, "boot\n")

	f, err := os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString("more\n")
	out.waitFor(t, "boot\nmore\n")
	// Rotation: the last words of the old file, then the new one.
	f.WriteString("last of old\n")
	f.Close()
	if err := os.Rename(log, log+".1"); err != nil {
		t.Fatal(err)
	}
	writeFile(t, log, "first of new\n")
	out.waitFor(t, "last of old\nfirst of new\n")
	// Truncation: a restarted writer starts the file again.
	time.Sleep(50 * time.Millisecond)
	writeFile(t, log, "again\n")
	out.waitFor(t, "first of new\nagain\n")
	// The writer's last line, then done.
	f, _ = os.OpenFile(log, os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString("bye\n")
	f.Close()
	done.Store(true)
	select {
	case err := <-ended:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("follow did not end after Done")
	}
	if got := out.String(); !strings.HasSuffix(got, "again\nbye\n") {
		t.Errorf("output %q lacks the last line", got)
	}
}

// Ending the context ends a follow without an error.
func TestCopyFollowCancel(t *testing.T) {
	log := filepath.Join(t.TempDir(), "l")
	writeFile(t, log, "x\n")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := Copy(ctx, &bytes.Buffer{}, log, Options{Follow: true, Poll: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
}

func FuzzLastLines(f *testing.F) {
	f.Add([]byte("a\nb\nc\n"), 2)
	f.Add([]byte("a\nb\nlogin: "), 1)
	f.Fuzz(func(t *testing.T, b []byte, n int) {
		n %= 64
		got := LastLines(b, n)
		if !bytes.HasSuffix(b, got) {
			t.Fatalf("LastLines(%q, %d) = %q, not a suffix", b, n, got)
		}
		if n > 0 && countLines(got) != min(n, countLines(b)) {
			t.Fatalf("LastLines(%q, %d) = %q: %d lines", b, n, got, countLines(got))
		}
	})
}
