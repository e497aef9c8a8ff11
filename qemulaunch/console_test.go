package qemulaunch

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) { s.mu.Lock(); defer s.mu.Unlock(); return s.b.Write(p) }
func (s *syncBuf) String() string              { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func newTestConsole(t *testing.T) (*Console, *io.PipeWriter, *syncBuf, string) {
	t.Helper()
	dir := t.TempDir()
	in := &syncBuf{}
	c, err := newConsole(filepath.Join(dir, "console.log"), in, discard())
	if err != nil {
		t.Fatal(err)
	}
	r, w := io.Pipe()
	go c.pump(r)
	sock := filepath.Join(dir, "console.sock")
	if err := c.serve(sock); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close(); <-c.Done(); c.closeServer(sock) })
	return c, w, in, sock
}

func TestConsoleWaitFor(t *testing.T) {
	c, w, _, _ := newTestConsole(t)
	io.WriteString(w, "booting\r\nkernel line\r\n")
	// Already seen output matches at once.
	ctx, cancel := context.WithTimeout(bg(), time.Second)
	defer cancel()
	if l, err := c.WaitFor(ctx, regexp.MustCompile(`^kernel`)); err != nil || l != "kernel line" {
		t.Fatalf("WaitFor(seen) = %q, %v", l, err)
	}
	// Future output, split across writes, and a prompt without newline.
	done := make(chan string)
	go func() {
		l, err := c.WaitFor(ctx, regexp.MustCompile(`^READY \d+$`))
		if err != nil {
			done <- "err: " + err.Error()
		}
		done <- l
	}()
	time.Sleep(20 * time.Millisecond)
	io.WriteString(w, "REA")
	io.WriteString(w, "DY 42\n")
	if got := <-done; got != "READY 42" {
		t.Fatalf("WaitFor(future) = %q", got)
	}
	go func() {
		l, _ := c.WaitFor(ctx, regexp.MustCompile(`login: $`))
		done <- l
	}()
	time.Sleep(20 * time.Millisecond)
	io.WriteString(w, "r1 login: ")
	if got := <-done; got != "r1 login: " {
		t.Fatalf("WaitFor(prompt) = %q", got)
	}
	// Timeout, then end of output.
	short, c2 := context.WithTimeout(bg(), 30*time.Millisecond)
	defer c2()
	if _, err := c.WaitFor(short, regexp.MustCompile("never")); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v", err)
	}
	go func() {
		_, err := c.WaitFor(ctx, regexp.MustCompile("never"))
		done <- err.Error()
	}()
	time.Sleep(20 * time.Millisecond)
	w.Close()
	if got := <-done; got != ErrConsoleClosed.Error() {
		t.Fatalf("after EOF: %q", got)
	}
}

// Several clients attach at once: each sees the history and live output,
// and what any of them types reaches the guest.
func TestConsoleSocketClients(t *testing.T) {
	c, w, in, sock := newTestConsole(t)
	io.WriteString(w, "history line\n")
	var readers []*bufio.Reader
	var conns []net.Conn
	for range 3 {
		conn, err := net.Dial("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		conns = append(conns, conn)
		readers = append(readers, bufio.NewReader(conn))
	}
	for i, r := range readers {
		if l, err := r.ReadString('\n'); err != nil || l != "history line\n" {
			t.Fatalf("client %d history: %q %v", i, l, err)
		}
	}
	io.WriteString(w, "live line\n")
	for i, r := range readers {
		if l, err := r.ReadString('\n'); err != nil || l != "live line\n" {
			t.Fatalf("client %d live: %q %v", i, l, err)
		}
	}
	io.WriteString(conns[0], "ls\n")
	io.WriteString(conns[2], "pwd\n")
	deadline := time.Now().Add(2 * time.Second)
	for !(strings.Contains(in.String(), "ls\n") && strings.Contains(in.String(), "pwd\n")) {
		if time.Now().After(deadline) {
			t.Fatalf("guest input = %q", in.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := string(c.Tail(10)); got != "live line\n" {
		t.Errorf("Tail(10) = %q", got)
	}
}

func TestConsoleLogRotates(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "console.log")
	f, err := openRotating(p, 100)
	if err != nil {
		t.Fatal(err)
	}
	for range 25 {
		f.Write([]byte("0123456789"))
	}
	f.Close()
	a, _ := os.ReadFile(p)
	b, _ := os.ReadFile(p + ".1")
	if len(a) > 100 || len(b) > 100 || len(a)+len(b) < 100 {
		t.Errorf("sizes %d + %d; want each ≤ 100 and the newest output kept", len(a), len(b))
	}
}
