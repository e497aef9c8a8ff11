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

// startGetty runs Getty on a new terminal for the current user (so no
// credentials change: the test runs as anyone) with password pw, and
// returns the terminal, the user name and Getty's result.
func startGetty(t *testing.T, pw string) (*ptytest.Term, string, <-chan error) {
	t.Helper()
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	cfg := &Config{SSH: SSHConfig{Users: []User{{Name: me.Username, PasswordHash: HashPassword(pw)}}}}
	term := ptytest.Open(t)
	done := make(chan error, 1)
	go func() { done <- Getty(cfg, term.TTY.Name()) }()
	return term, me.Username, done
}

// login answers the prompts.
func login(t *testing.T, term *ptytest.Term, name, pw string) {
	t.Helper()
	term.Expect(t, `login: $`, 10*time.Second)
	term.Send(t, name+"\r")
	term.Expect(t, `Password: $`, 10*time.Second)
	term.Send(t, pw+"\r")
}

// ended waits for Getty's result.
func ended(t *testing.T, done <-chan error, why string) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(20 * time.Second):
		t.Fatalf("Getty did not return %s", why)
	}
	return nil
}

// The console login on a real terminal: a wrong password is refused, the
// password is not echoed, the right one gives the user's login shell with
// the terminal as its controlling terminal, and logging out ends it.
func TestGettyLogin(t *testing.T) {
	term, name, done := startGetty(t, "s3cret-pw")
	login(t, term, name, "wrong")
	term.Expect(t, `Login incorrect`, 10*time.Second)
	login(t, term, name, "s3cret-pw")
	term.Send(t, "echo logged-in-$((6*7)) $(tty) $TERM\r")
	got := term.Expect(t, `logged-in-42 \S+ \S+`, 20*time.Second)
	if f := strings.Fields(got); f[1] != term.TTY.Name() || f[2] != loginTerm {
		t.Errorf("shell said %q; want its terminal %s and TERM %s", got, term.TTY.Name(), loginTerm)
	}
	if strings.Contains(term.Output(), "s3cret-pw") || strings.Contains(term.Output(), "wrong") {
		t.Errorf("a password was echoed:\n%s", term.Output())
	}
	term.Send(t, "exit\r")
	if err := ended(t, done, "after the shell exited"); err != nil {
		t.Errorf("Getty after logout: %v", err)
	}
}

// At shutdown (SIGTERM to every process) the logged-in shell, which
// ignores SIGTERM, is hung up and the session ends at once.
func TestGettyHangsUpOnSIGTERM(t *testing.T) {
	term, name, done := startGetty(t, "pw")
	login(t, term, name, "pw")
	term.Send(t, "trap '' TERM; echo shell-$((6*7))\r")
	term.Expect(t, `shell-42`, 20*time.Second)
	// Getty catches SIGTERM while the shell runs: this process survives it.
	syscall.Kill(os.Getpid(), syscall.SIGTERM)
	ended(t, done, "after SIGTERM: the shell was not hung up") // its status says SIGHUP
}

// Three failed logins end a getty (PID 1 starts a new one); an empty name
// asks again and does not count.
func TestGettyGivesUp(t *testing.T) {
	term, name, done := startGetty(t, "right")
	for i := 0; i < gettyTries; i++ {
		term.Expect(t, `login: $`, 10*time.Second)
		term.Send(t, "\r")
		login(t, term, name, "guess")
		term.Expect(t, `Login incorrect`, 10*time.Second)
	}
	if err := ended(t, done, "after three failures"); err != nil {
		t.Errorf("Getty: %v", err)
	}
}
