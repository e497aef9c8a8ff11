package agent

import (
	"os"
	"os/user"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ptytest"
)

func TestConsoleTTY(t *testing.T) {
	for cmdline, want := range map[string]string{
		"console=ttyS0 quiet":                   "/dev/ttyS0",
		"console=tty0 console=ttyS1,115200n8 x": "/dev/ttyS1",
		"quiet root=/dev/vda":                   "/dev/ttyS0",
		"console=":                              "/dev/ttyS0",
	} {
		if got := ConsoleTTY(cmdline); got != want {
			t.Errorf("ConsoleTTY(%q) = %q, want %q", cmdline, got, want)
		}
	}
}

// The console login on a real terminal: a wrong password is refused, the
// password is not echoed, the right one gives the user's login shell with
// the terminal as its controlling terminal, and logging out ends it.
func TestGettyLogin(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{SSH: SSHConfig{Users: []User{{Name: me.Username, PasswordHash: HashPassword("s3cret-pw")}}}}
	term := ptytest.Open(t)
	done := make(chan error, 1)
	go func() { done <- Getty(cfg, term.TTY.Name()) }()

	term.Expect(t, `login: $`, 10*time.Second)
	term.Send(t, me.Username+"\r")
	term.Expect(t, `Password: $`, 10*time.Second)
	term.Send(t, "wrong\r")
	term.Expect(t, `Login incorrect`, 10*time.Second)
	term.Expect(t, `login: $`, 10*time.Second)
	term.Send(t, me.Username+"\r")
	term.Expect(t, `Password: $`, 10*time.Second)
	term.Send(t, "s3cret-pw\r")
	term.Send(t, "echo logged-in-$((6*7)) $(tty) $TERM\r")
	got := term.Expect(t, `logged-in-42 \S+ \S+`, 20*time.Second)
	if f := strings.Fields(got); f[1] != term.TTY.Name() || f[2] != loginTerm {
		t.Errorf("shell said %q; want its terminal %s and TERM %s", got, term.TTY.Name(), loginTerm)
	}
	if strings.Contains(term.Output(), "s3cret-pw") || strings.Contains(term.Output(), "wrong") {
		t.Errorf("a password was echoed:\n%s", term.Output())
	}
	term.Send(t, "exit\r")
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Getty after logout: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Getty did not return after the shell exited")
	}
}

// At shutdown (SIGTERM to every process) the logged-in shell, which
// ignores SIGTERM, is hung up and the session ends at once.
func TestGettyHangsUpOnSIGTERM(t *testing.T) {
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{SSH: SSHConfig{Users: []User{{Name: me.Username, PasswordHash: HashPassword("pw")}}}}
	term := ptytest.Open(t)
	done := make(chan error, 1)
	go func() { done <- Getty(cfg, term.TTY.Name()) }()
	term.Expect(t, `login: $`, 10*time.Second)
	term.Send(t, me.Username+"\r")
	term.Expect(t, `Password: $`, 10*time.Second)
	term.Send(t, "pw\r")
	term.Send(t, "trap '' TERM; echo shell-$((6*7))\r")
	term.Expect(t, `shell-42`, 20*time.Second)
	// Getty catches SIGTERM while the shell runs: this process survives it.
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	select {
	case <-done: // the shell ended (by SIGHUP; its status says so)
	case <-time.After(10 * time.Second):
		t.Fatal("the shell did not end after SIGTERM")
	}
}

// Three failed logins end a getty (PID 1 starts a new one).
func TestGettyGivesUp(t *testing.T) {
	cfg := &Config{SSH: SSHConfig{Users: []User{{Name: "antidote", PasswordHash: HashPassword("right")}}}}
	term := ptytest.Open(t)
	done := make(chan error, 1)
	go func() { done <- Getty(cfg, term.TTY.Name()) }()
	for i := 0; i < gettyTries; i++ {
		term.Expect(t, `login: $`, 10*time.Second)
		term.Send(t, "\r") // an empty name asks again and does not count
		term.Expect(t, `login: $`, 10*time.Second)
		term.Send(t, "antidote\r")
		term.Expect(t, `Password: $`, 10*time.Second)
		term.Send(t, "guess\r")
		term.Expect(t, `Login incorrect`, 10*time.Second)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Getty: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Getty did not give up after three failures")
	}
}
