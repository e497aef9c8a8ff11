package agent

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/creack/pty"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// session is one SSH session channel: at most one program (shell, exec or
// subsystem) runs in it.
type session struct {
	srv  *Server
	acct *account
	ch   ssh.Channel

	mu      sync.Mutex
	env     []string
	term    string
	win     *pty.Winsize // non-nil once a pty was requested
	ptmx    *os.File
	proc    *os.Process
	started bool
}

// ptyRequest is RFC 4254 section 6.2.
type ptyRequest struct {
	Term             string
	Cols, Rows, W, H uint32
	Modes            string
}

type windowChange struct {
	Cols, Rows, W, H uint32
}

func (s *session) serve(reqs <-chan *ssh.Request) {
	for req := range reqs {
		ok := s.handle(req)
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if ok {
			switch req.Type {
			case "shell", "exec", "subsystem":
				go s.run(req)
			}
		}
	}
	s.mu.Lock()
	if s.proc != nil {
		s.proc.Signal(syscall.SIGHUP)
	}
	s.mu.Unlock()
}

// handle applies a request and says whether it is accepted; programs start
// in run, after the reply.
func (s *session) handle(req *ssh.Request) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch req.Type {
	case "env":
		var kv struct{ Name, Value string }
		if ssh.Unmarshal(req.Payload, &kv) != nil || kv.Name == "" {
			return false
		}
		s.env = append(s.env, kv.Name+"="+kv.Value)
		return true
	case "pty-req":
		var p ptyRequest
		if ssh.Unmarshal(req.Payload, &p) != nil || s.started {
			return false
		}
		s.term = p.Term
		s.win = &pty.Winsize{Cols: uint16(p.Cols), Rows: uint16(p.Rows), X: uint16(p.W), Y: uint16(p.H)}
		return true
	case "window-change":
		var w windowChange
		if ssh.Unmarshal(req.Payload, &w) != nil || s.win == nil {
			return false
		}
		s.win = &pty.Winsize{Cols: uint16(w.Cols), Rows: uint16(w.Rows), X: uint16(w.W), Y: uint16(w.H)}
		if s.ptmx != nil {
			pty.Setsize(s.ptmx, s.win)
		}
		return true
	case "signal":
		var sig struct{ Signal string }
		if ssh.Unmarshal(req.Payload, &sig) != nil || s.proc == nil {
			return false
		}
		n, ok := signalNames()[sig.Signal]
		if ok {
			s.proc.Signal(n)
		}
		return ok
	case "shell", "exec", "subsystem":
		if s.started {
			return false
		}
		if req.Type == "subsystem" {
			var sub struct{ Name string }
			if ssh.Unmarshal(req.Payload, &sub) != nil || sub.Name != "sftp" {
				return false
			}
		}
		if req.Type == "exec" {
			var e struct{ Command string }
			if ssh.Unmarshal(req.Payload, &e) != nil {
				return false
			}
		}
		s.started = true
		return true
	}
	return false
}

// signalNames maps SSH signal names (RFC 4254 6.10) to signals.
func signalNames() map[string]syscall.Signal {
	return map[string]syscall.Signal{
		"ABRT": syscall.SIGABRT, "ALRM": syscall.SIGALRM, "FPE": syscall.SIGFPE,
		"HUP": syscall.SIGHUP, "ILL": syscall.SIGILL, "INT": syscall.SIGINT,
		"KILL": syscall.SIGKILL, "PIPE": syscall.SIGPIPE, "QUIT": syscall.SIGQUIT,
		"SEGV": syscall.SIGSEGV, "TERM": syscall.SIGTERM, "USR1": syscall.SIGUSR1,
		"USR2": syscall.SIGUSR2,
	}
}

// run starts the program of an accepted shell/exec/subsystem request, waits
// for it, reports its exit status and closes the channel.
func (s *session) run(req *ssh.Request) {
	defer s.ch.Close()
	var status exitStatus
	var err error
	switch req.Type {
	case "shell":
		sh := s.acct.shell
		status, err = s.runProgram(sh, []string{"-" + filepath.Base(sh)})
	case "exec":
		var e struct{ Command string }
		ssh.Unmarshal(req.Payload, &e)
		status, err = s.runProgram(s.acct.shell, []string{filepath.Base(s.acct.shell), "-c", e.Command})
	case "subsystem":
		status, err = s.runSFTP()
	}
	if err != nil {
		fmt.Fprintf(s.ch.Stderr(), "endpointkit agent: %v\r\n", err)
		status = exitStatus{code: 127}
	}
	s.srv.log().Debug("ssh session ended", "user", s.acct.name, "type", req.Type, "status", status.code, "signal", status.signal)
	if status.signal != "" {
		s.ch.SendRequest("exit-signal", false, ssh.Marshal(struct {
			Signal     string
			CoreDumped bool
			Msg, Lang  string
		}{Signal: status.signal}))
		return
	}
	s.ch.SendRequest("exit-status", false, ssh.Marshal(struct{ Status uint32 }{uint32(status.code)}))
}

type exitStatus struct {
	code   int
	signal string // without "SIG"
}

func statusOf(err error) (exitStatus, error) {
	if err == nil {
		return exitStatus{}, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			for name, sig := range signalNames() {
				if sig == ws.Signal() {
					return exitStatus{code: 128 + int(sig), signal: name}, nil
				}
			}
			return exitStatus{code: 128 + int(ws.Signal())}, nil
		}
		return exitStatus{code: ee.ExitCode()}, nil
	}
	return exitStatus{}, err
}

// command prepares path/argv to run as the session's user in its home.
func (s *session) command(path string, argv []string) (*exec.Cmd, error) {
	s.mu.Lock()
	env := append([]string{}, s.env...)
	if s.term != "" {
		env = append(env, "TERM="+s.term)
	}
	s.mu.Unlock()
	return s.acct.command(path, argv, env)
}

// command prepares path/argv to run as the account in its home (or /),
// in a session of its own, with env added to the account's environment.
func (a *account) command(path string, argv, env []string) (*exec.Cmd, error) {
	cmd := &exec.Cmd{Path: path, Args: argv, Dir: a.home}
	cmd.Env = append(append([]string{}, a.env...), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if uint32(os.Geteuid()) != a.uid || uint32(os.Getegid()) != a.gid {
		if os.Geteuid() != 0 {
			return nil, fmt.Errorf("cannot run as %s: the agent is not root", a.name)
		}
		cmd.SysProcAttr.Credential = &syscall.Credential{Uid: a.uid, Gid: a.gid, Groups: a.groups}
		// Raw sockets for the user's ping and tcpdump (busybox ping has
		// no ICMP datagram-socket fallback); inherited as an ambient
		// capability, since an initramfs carries no file capabilities.
		cmd.SysProcAttr.AmbientCaps = []uintptr{unix.CAP_NET_RAW}
	}
	if _, err := os.Stat(cmd.Dir); err != nil {
		cmd.Dir = "/"
	}
	return cmd, nil
}

func (s *session) runProgram(path string, argv []string) (exitStatus, error) {
	cmd, err := s.command(path, argv)
	if err != nil {
		return exitStatus{}, err
	}
	s.mu.Lock()
	win := s.win
	s.mu.Unlock()
	if win != nil {
		return s.runPTY(cmd, win)
	}
	return s.runPipes(cmd)
}

func (s *session) runPipes(cmd *exec.Cmd) (exitStatus, error) {
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return exitStatus{}, err
	}
	cmd.Stdout = s.ch
	cmd.Stderr = s.ch.Stderr()
	// Background children that keep stdout open must not hold the session.
	cmd.WaitDelay = time.Second
	if err := cmd.Start(); err != nil {
		return exitStatus{}, err
	}
	s.setProc(cmd.Process, nil)
	go func() {
		io.Copy(stdin, s.ch)
		stdin.Close()
	}()
	return statusOf(cmd.Wait())
}

func (s *session) runPTY(cmd *exec.Cmd, win *pty.Winsize) (exitStatus, error) {
	ptmx, tty, err := pty.Open()
	if err != nil {
		return exitStatus{}, err
	}
	defer ptmx.Close()
	if cmd.SysProcAttr.Credential != nil {
		os.Chown(tty.Name(), int(s.acct.uid), -1)
	}
	pty.Setsize(ptmx, win)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = tty, tty, tty
	cmd.SysProcAttr.Setctty = true
	cmd.SysProcAttr.Ctty = 0
	err = cmd.Start()
	tty.Close()
	if err != nil {
		return exitStatus{}, err
	}
	s.setProc(cmd.Process, ptmx)
	go io.Copy(ptmx, s.ch)
	out := make(chan struct{})
	go func() {
		io.Copy(s.ch, ptmx)
		close(out)
	}()
	werr := cmd.Wait()
	select { // the output still buffered in the pty, not whatever orphans write
	case <-out:
	case <-time.After(time.Second):
	}
	return statusOf(werr)
}

func (s *session) setProc(p *os.Process, ptmx *os.File) {
	s.mu.Lock()
	s.proc, s.ptmx = p, ptmx
	s.mu.Unlock()
}

// runSFTP serves the sftp subsystem: in-process when the user is the
// agent's own user, else through SFTPCommand run as the user.
func (s *session) runSFTP() (exitStatus, error) {
	if uint32(os.Geteuid()) == s.acct.uid {
		srv, err := sftp.NewServer(s.ch, sftp.WithServerWorkingDirectory(s.acct.home))
		if err != nil {
			return exitStatus{}, err
		}
		if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
			return exitStatus{code: 1}, nil
		}
		return exitStatus{}, nil
	}
	argv := s.srv.SFTPCommand
	if len(argv) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return exitStatus{}, err
		}
		argv = []string{exe, "sftp-server"}
	}
	cmd, err := s.command(argv[0], argv)
	if err != nil {
		return exitStatus{}, err
	}
	return s.runPipes(cmd)
}

// ServeSFTP serves sftp on stdin/stdout in the current directory (the
// "sftp-server" mode of the agent binary).
func ServeSFTP(stdin io.Reader, stdout io.WriteCloser) error {
	srv, err := sftp.NewServer(struct {
		io.Reader
		io.WriteCloser
	}{stdin, stdout})
	if err != nil {
		return err
	}
	if err := srv.Serve(); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}
