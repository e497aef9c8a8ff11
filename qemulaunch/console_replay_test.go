package qemulaunch

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// An attaching client first gets the last consoleReplay lines — not the
// whole boot log — ending with the prompt that waits for it.
func TestConsoleReplaysLastLines(t *testing.T) {
	c, w, _, sock := newTestConsole(t)
	for i := range 200 {
		fmt.Fprintf(w, "boot line %d\r\n", i)
	}
	io.WriteString(w, "r1 login: ")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.HasSuffix(string(c.Tail(20)), "login: ") {
		if time.Now().After(deadline) {
			t.Fatal("console did not take the output")
		}
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := net.Dial("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	r := bufio.NewReader(conn)
	// The prompt is the last of the replayed lines.
	var lines []string
	for len(lines) < consoleReplay-1 {
		l, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("after %d lines: %v", len(lines), err)
		}
		lines = append(lines, l)
	}
	if first := fmt.Sprintf("boot line %d\r\n", 200-consoleReplay+1); lines[0] != first {
		t.Fatalf("replay starts %q; want %q (the last %d lines)", lines[0], first, consoleReplay)
	}
	prompt := make([]byte, len("r1 login: "))
	if _, err := io.ReadFull(r, prompt); err != nil || string(prompt) != "r1 login: " {
		t.Fatalf("replay ends %q, %v", prompt, err)
	}
}
