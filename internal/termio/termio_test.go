package termio

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// The detach key ends Attach; what was typed before it reaches the remote
// side, and the remote side's output reaches stdout.
func TestAttachDetach(t *testing.T) {
	local, remote := net.Pipe()
	defer remote.Close()
	got := make(chan string, 1)
	go func() {
		remote.Write([]byte("login: "))
		buf := make([]byte, 64)
		n, _ := io.ReadAtLeast(remote, buf, 3)
		got <- string(buf[:n])
	}()
	var out, errb bytes.Buffer
	stdin := io.MultiReader(strings.NewReader("abc"), slowReader{"\x1dignored"})
	if err := Attach(context.Background(), local, stdin, &out, &errb); err != nil {
		t.Fatal(err)
	}
	if s := <-got; s != "abc" {
		t.Errorf("remote got %q, want abc", s)
	}
	if !strings.Contains(out.String(), "login: ") {
		t.Errorf("stdout %q lacks the remote output", out.String())
	}
	if errb.Len() != 0 {
		t.Errorf("not a terminal, yet stderr got %q", errb.String())
	}
}

// The remote side closing ends Attach without an error.
func TestAttachRemoteEnds(t *testing.T) {
	local, remote := net.Pipe()
	go func() {
		remote.Write([]byte("bye\n"))
		remote.Close()
	}()
	var out bytes.Buffer
	if err := Attach(context.Background(), local, strings.NewReader(""), &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "bye\n" {
		t.Errorf("stdout %q", out.String())
	}
}

// slowReader hands out its bytes after a pause (so the first write lands
// before the detach key is seen).
type slowReader struct{ s string }

func (r slowReader) Read(p []byte) (int, error) {
	time.Sleep(50 * time.Millisecond)
	return copy(p, r.s), nil
}
