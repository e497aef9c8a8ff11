package agent

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Console login: what getty and login do on a full Linux, for the tiny
// endpoint, so that its serial console (`lesson console EP`) is a way in
// when SSH is not.
const (
	// DefaultConsoleTTY is the login terminal when the kernel command line
	// names no console= device.
	DefaultConsoleTTY = "ttyS0"
	// gettyFallback starts the console login even when the endpoint never
	// gets ready (the SSH server or DHCP is broken: exactly when the
	// console is needed).
	gettyFallback = 15 * time.Second
	// gettyTries is how many failed logins end one getty (PID 1 starts a
	// new one, as init respawns getty).
	gettyTries = 3
	// gettyQuickFails stops respawning a getty that keeps dying at once
	// (no such terminal).
	gettyQuickFails = 5
	loginTerm       = "vt220"
)

// ConsoleTTY returns the device of the kernel's console — the last
// console= of the kernel command line, without its options — or
// DefaultConsoleTTY.
func ConsoleTTY(cmdline string) string {
	tty := DefaultConsoleTTY
	for _, f := range strings.Fields(cmdline) {
		if v, ok := strings.CutPrefix(f, "console="); ok && v != "" {
			tty, _, _ = strings.Cut(v, ",")
		}
	}
	return "/dev/" + tty
}

// Getty is the "getty" mode of the agent: a login on the terminal tty. It
// prints the host name and a login prompt, reads a user name and, without
// echo, a password, checks them against the agent's users (the password
// hashes SSH uses), and runs the user's login shell with the terminal as
// its controlling terminal. It returns when that shell ends, or after
// gettyTries failed logins; PID 1 then starts it again.
func Getty(cfg *Config, tty string) error {
	f, err := os.OpenFile(tty, os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		return fmt.Errorf("getty: %w", err)
	}
	defer f.Close()
	fd := int(f.Fd())
	if err := saneTerminal(fd); err != nil {
		return fmt.Errorf("getty: %s: %w", tty, err)
	}
	host, _ := os.Hostname()
	for failed := 0; failed < gettyTries; {
		fmt.Fprintf(f, "\r\n%s login: ", host)
		name, err := readLine(f)
		if err != nil {
			return fmt.Errorf("getty: %s: %w", tty, err)
		}
		if name == "" {
			continue
		}
		fmt.Fprint(f, "Password: ")
		setEcho(fd, false)
		password, err := readLine(f)
		setEcho(fd, true)
		fmt.Fprint(f, "\r\n")
		if err != nil {
			return fmt.Errorf("getty: %s: %w", tty, err)
		}
		if passwordOK(cfg.SSH.Users, name, password) {
			return runLoginShell(f, tty, name)
		}
		failed++
		time.Sleep(time.Second) // as login(1): guessing is slow
		fmt.Fprint(f, "Login incorrect\r\n")
	}
	return nil
}

// runLoginShell runs name's login shell on the terminal f (the device tty,
// owned by the user meanwhile) and waits for it.
func runLoginShell(f *os.File, tty, name string) error {
	acct, err := lookupAccount(name)
	if err != nil {
		return fmt.Errorf("getty: %s: %w", name, err)
	}
	cmd, err := acct.command(acct.shell, []string{"-" + filepath.Base(acct.shell)}, []string{"TERM=" + loginTerm})
	if err != nil {
		return fmt.Errorf("getty: %w", err)
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = f, f, f
	cmd.SysProcAttr.Setctty, cmd.SysProcAttr.Ctty = true, 0
	os.Chown(tty, int(acct.uid), int(acct.gid))
	defer os.Chown(tty, 0, 0)
	// An interactive shell ignores SIGTERM: at shutdown (PID 1 sends
	// SIGTERM to all) hang the session up instead, as a terminal that
	// goes away does, so that it ends at once.
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, unix.SIGTERM, unix.SIGHUP)
	defer signal.Stop(sigs)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("getty: %s: %w", name, err)
	}
	go func() {
		for range sigs {
			unix.Kill(-cmd.Process.Pid, unix.SIGHUP)
			unix.Kill(-cmd.Process.Pid, unix.SIGCONT)
		}
	}()
	return cmd.Wait()
}

// saneTerminal sets the line discipline a login expects (line editing,
// echo, signals, CR→NL on input, NL→CRNL on output: what `stty sane` does)
// after whatever a previous session left, and a 24×80 window on a serial
// line that has no size.
func saneTerminal(fd int) error {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return err
	}
	t.Iflag = t.Iflag&^(unix.IGNCR|unix.INLCR|unix.IUCLC|unix.IXOFF) | unix.ICRNL | unix.IXON | unix.BRKINT | unix.IMAXBEL
	t.Oflag = t.Oflag&^(unix.OCRNL|unix.ONLRET|unix.ONOCR) | unix.OPOST | unix.ONLCR
	t.Cflag |= unix.CREAD | unix.CS8
	t.Lflag |= unix.ICANON | unix.ISIG | unix.IEXTEN | unix.ECHO | unix.ECHOE | unix.ECHOK | unix.ECHOCTL | unix.ECHOKE
	t.Cc[unix.VMIN], t.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, t); err != nil {
		return err
	}
	if ws, err := unix.IoctlGetWinsize(fd, unix.TIOCGWINSZ); err == nil && ws.Row == 0 {
		unix.IoctlSetWinsize(fd, unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80})
	}
	return nil
}

func setEcho(fd int, on bool) {
	t, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return
	}
	if on {
		t.Lflag |= unix.ECHO
	} else {
		t.Lflag &^= unix.ECHO
	}
	unix.IoctlSetTermios(fd, unix.TCSETS, t)
}

// readLine reads one line of a terminal in canonical mode (each read
// returns at most one line) without its line ending.
func readLine(r io.Reader) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			return string(bytes.TrimRight(buf[:n], "\r\n")), nil
		}
		if err == nil {
			continue
		}
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return "", err
	}
}

// startGetty starts "ekagent getty TTY" once.
func (s *supervisor) startGetty(tty string) {
	if s.gettyPID != 0 || s.gettyTTY != "" && s.gettyFails >= gettyQuickFails {
		return
	}
	s.gettyTTY = tty
	exe, err := os.Executable()
	if err != nil {
		exe = "/init"
	}
	pid, err := s.start([]string{exe, "getty", tty}, nil)
	if err != nil {
		s.log.Error("start console login", "tty", tty, "err", err)
		return
	}
	s.gettyPID, s.gettyStarted = pid, time.Now()
}

// gettyEnded starts a new getty after one ended (a logout, three failed
// logins), unless it keeps failing at once.
func (s *supervisor) gettyEnded(pid int) {
	if pid != s.gettyPID || s.stopping {
		return
	}
	s.gettyPID = 0
	if time.Since(s.gettyStarted) < 2*time.Second {
		s.gettyFails++
		if s.gettyFails >= gettyQuickFails {
			s.log.Warn("console login keeps failing; not restarting it", "tty", s.gettyTTY)
			return
		}
	} else {
		s.gettyFails = 0
	}
	s.startGetty(s.gettyTTY)
}
