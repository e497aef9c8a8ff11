package peertest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// NetconfdConfig says how a test netconfd runs.
type NetconfdConfig struct {
	// Target is netconfd's edit target: "candidate" (the default, with
	// :candidate, :validate and commit) or "running" (writable-running
	// only).
	Target string
	// Modules are extra YANG modules (names or paths) to load besides
	// ietf-interfaces, iana-if-type and ietf-system.
	Modules []string
}

// Netconfd is a yuma123 netconfd reached through an sshd "netconf"
// subsystem on its own loopback port.
type Netconfd struct {
	SSHD *SSHD
	// Socket is netconfd's private ncxserver socket.
	Socket string
	Dir    string

	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// Log returns what netconfd printed so far.
func (n *Netconfd) Log() string { return n.log.String() }

// StartNetconfd starts netconfd (superuser u) and an sshd whose netconf
// subsystem reaches it, both stopped when the test ends.
//
// Each instance uses its own ncxserver socket (netconf-subsystem's
// --ncxserver-sockname=PORT@PATH form), its own HOME (where netconfd keeps
// its startup file) and private UTS and network namespaces (the
// ietf-system module runs `hostname` when /system/hostname changes), so
// parallel tests never share state. ietf-interfaces is loaded from its
// YANG file without the packaged instrumentation, which runs ifconfig on
// the host's interfaces.
func StartNetconfd(tb testing.TB, u *User, cfg NetconfdConfig) *Netconfd {
	tb.Helper()
	netconfd := findTool(tb, "netconfd", "/usr/sbin/netconfd")
	subsys := findTool(tb, "netconf-subsystem", "/usr/sbin/netconf-subsystem")
	ifYang := "/usr/share/yuma/modules/ietf/ietf-interfaces@2014-05-08.yang"
	if _, err := os.Stat(ifYang); err != nil {
		tb.Skipf("needs %s: run `make deps` (netconfd packages)", ifYang)
	}
	if cfg.Target == "" {
		cfg.Target = "candidate"
	}
	// A short path: unix socket names are limited to 108 bytes.
	dir, err := os.MkdirTemp("/tmp", "ektnc")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	n := &Netconfd{Dir: dir, Socket: filepath.Join(dir, "ncxserver.sock"), log: &lockedBuffer{}}

	n.SSHD = StartSSHD(tb, SSHDConfig{
		Users:      []*User{u},
		Subsystems: map[string]string{"netconf": fmt.Sprintf("%s --ncxserver-sockname={port}@%s", subsys, n.Socket)},
	})

	args := []string{
		"--superuser=" + u.Name,
		"--no-startup",
		"--target=" + cfg.Target,
		"--ncxserver-sockname=" + n.Socket,
		fmt.Sprintf("--port=%d", n.SSHD.Port),
		"--module=iana-if-type",
		"--module=" + ifYang,
		"--module=ietf-system",
		"--log-level=info",
	}
	for _, m := range cfg.Modules {
		args = append(args, "--module="+m)
	}
	n.cmd = exec.Command(netconfd, args...)
	n.cmd.Dir = dir
	n.cmd.Env = []string{"HOME=" + dir, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	n.cmd.Stdout, n.cmd.Stderr = n.log, n.log
	n.cmd.WaitDelay = time.Second
	n.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Cloneflags: syscall.CLONE_NEWUTS | syscall.CLONE_NEWNET}
	if err := n.cmd.Start(); err != nil {
		tb.Fatalf("peertest: netconfd: %v", err)
	}
	n.done = make(chan struct{})
	go func() { n.cmd.Wait(); close(n.done) }()
	tb.Cleanup(n.stop)

	deadline := time.Now().Add(15 * time.Second)
	for {
		select {
		case <-n.done:
			tb.Fatalf("peertest: netconfd exited:\n%s", n.Log())
		default:
		}
		if c, err := net.Dial("unix", n.Socket); err == nil {
			c.Close()
			return n
		}
		if time.Now().After(deadline) {
			tb.Fatalf("peertest: netconfd socket %s not ready after 15s:\n%s", n.Socket, n.Log())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (n *Netconfd) stop() { stopGroup(n.cmd.Process.Pid, n.done) }
