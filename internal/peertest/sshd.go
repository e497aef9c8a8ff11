package peertest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// SSHDConfig says what a test sshd offers.
type SSHDConfig struct {
	// Users may log in with their password and their key.
	Users []*User
	// Subsystems maps a subsystem name to its command. "{port}" in the
	// command is replaced by the port sshd listens on. sftp is always
	// offered (internal-sftp).
	Subsystems map[string]string
	// Isolate runs sshd (and so every session) in private UTS and mount
	// namespaces where /etc/hostname and /etc/init.d are bind mounts of
	// the SSHD's HostnameFile and InitDir: a session may change the
	// hostname or restart "services" without touching the machine.
	Isolate bool
	// Extra lines appended to sshd_config.
	Extra []string
}

// SSHD is a running OpenSSH server on 127.0.0.1.
type SSHD struct {
	Host string
	Port int
	// HostKeys are the server's host keys as an image manifest lists them.
	HostKeys []vmimage.HostKey
	// KnownHosts is a known_hosts file naming the server's keys.
	KnownHosts string
	Dir        string
	// HostnameFile and InitDir back /etc/hostname and /etc/init.d inside
	// an isolated server (empty otherwise).
	HostnameFile, InitDir string

	cmd  *exec.Cmd
	log  *lockedBuffer
	done chan struct{}
}

// Addr is host:port.
func (s *SSHD) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// Log returns what sshd printed so far.
func (s *SSHD) Log() string { return s.log.String() }

// PID is the listening sshd's process id.
func (s *SSHD) PID() int { return s.cmd.Process.Pid }

// StartSSHD starts sshd on a free loopback port and stops it when the test
// ends. It needs root and skips when sshd is not installed.
func StartSSHD(tb testing.TB, cfg SSHDConfig) *SSHD {
	tb.Helper()
	ektest.RequireRoot(tb)
	sshdPath := findTool(tb, "sshd", "/usr/sbin/sshd")
	if cfg.Isolate {
		ektest.RequireTool(tb, "unshare")
	}
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil { // privilege-separation dir
		tb.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "ekt-sshd-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	s := &SSHD{Host: "127.0.0.1", Dir: dir}
	keyFiles, err := s.writeHostKeys()
	if err != nil {
		tb.Fatal(err)
	}
	if err := writeAuthorizedKeys(dir, cfg.Users); err != nil {
		tb.Fatal(err)
	}
	if cfg.Isolate {
		if err := s.prepareIsolation(); err != nil {
			tb.Fatal(err)
		}
	}

	var lastErr error
	for attempt := 0; attempt < 10; attempt++ {
		port, err := freePort()
		if err != nil {
			tb.Fatal(err)
		}
		conf := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(conf, []byte(sshdConfig(dir, port, keyFiles, cfg)), 0o600); err != nil {
			tb.Fatal(err)
		}
		if lastErr = s.start(sshdPath, conf, port, cfg.Isolate); lastErr == nil {
			break
		}
	}
	if lastErr != nil {
		tb.Fatalf("peertest: sshd did not start: %v\n%s", lastErr, s.Log())
	}
	tb.Cleanup(s.stop)
	if err := os.WriteFile(filepath.Join(dir, "known_hosts"), s.knownHostsLines(), 0o644); err != nil {
		tb.Fatal(err)
	}
	s.KnownHosts = filepath.Join(dir, "known_hosts")
	return s
}

func (s *SSHD) start(sshdPath, conf string, port int, isolate bool) error {
	argv := []string{sshdPath, "-D", "-e", "-f", conf}
	if isolate {
		script := `mount --bind "$1" /etc/hostname && mount --bind "$2" /etc/init.d && shift 2 && exec "$@"`
		argv = append([]string{"unshare", "--uts", "--mount", "--propagation", "private", "--", "sh", "-c", script, "sh", s.HostnameFile, s.InitDir}, argv...)
	}
	s.log = &lockedBuffer{}
	s.cmd = exec.Command(argv[0], argv[1:]...)
	s.cmd.Stdout, s.cmd.Stderr = s.log, s.log
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Session processes inherit the log pipe; do not wait for them.
	s.cmd.WaitDelay = time.Second
	if err := s.cmd.Start(); err != nil {
		return err
	}
	s.done = make(chan struct{})
	go func() { s.cmd.Wait(); close(s.done) }()
	s.Port = port
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-s.done:
			return fmt.Errorf("sshd exited: %s", strings.TrimSpace(s.Log()))
		default:
		}
		if bannerOK(s.Addr()) {
			// The banner could come from another process that took the
			// port; sshd would then have exited on bind failure.
			time.Sleep(20 * time.Millisecond)
			select {
			case <-s.done:
				return fmt.Errorf("sshd exited: %s", strings.TrimSpace(s.Log()))
			default:
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	s.stop()
	return errors.New("sshd not answering after 10s")
}

func (s *SSHD) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	stopGroup(s.cmd.Process.Pid, s.done)
}

// stopGroup terminates the process group led by pid (then kills it after
// 5 s) and waits until done is closed.
func stopGroup(pid int, done <-chan struct{}) {
	syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		syscall.Kill(-pid, syscall.SIGKILL)
		<-done
	}
}

func bannerOK(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Second))
	buf := make([]byte, 8)
	n, _ := c.Read(buf)
	return bytes.HasPrefix(buf[:n], []byte("SSH-2.0"))
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func sshdConfig(dir string, port int, keyFiles []string, cfg SSHDConfig) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Port %d\nListenAddress 127.0.0.1\n", port)
	for _, k := range keyFiles {
		fmt.Fprintf(&b, "HostKey %s\n", k)
	}
	fmt.Fprintf(&b, "PidFile %s\n", filepath.Join(dir, "sshd.pid"))
	fmt.Fprintf(&b, "AuthorizedKeysFile %s/authorized_keys/%%u\n", dir)
	b.WriteString("UsePAM no\nStrictModes no\nPasswordAuthentication yes\nKbdInteractiveAuthentication no\n")
	b.WriteString("PermitRootLogin prohibit-password\nMaxStartups 200\nMaxSessions 50\nLogLevel ERROR\n")
	b.WriteString("AcceptEnv LANG LC_*\nPrintMotd no\n")
	b.WriteString("Subsystem sftp internal-sftp\n")
	names := make([]string, 0, len(cfg.Subsystems))
	for n := range cfg.Subsystems {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		cmd := strings.ReplaceAll(cfg.Subsystems[n], "{port}", strconv.Itoa(port))
		fmt.Fprintf(&b, "Subsystem %s %s\n", n, cmd)
	}
	for _, l := range cfg.Extra {
		b.WriteString(l + "\n")
	}
	return b.String()
}

// writeHostKeys generates an ed25519 and an ECDSA host key.
func (s *SSHD) writeHostKeys() ([]string, error) {
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var files []string
	for name, key := range map[string]any{"ssh_host_ed25519_key": edKey, "ssh_host_ecdsa_key": ecKey} {
		block, err := ssh.MarshalPrivateKey(key, "")
		if err != nil {
			return nil, err
		}
		path := filepath.Join(s.Dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
			return nil, err
		}
		signer, err := ssh.NewSignerFromKey(key)
		if err != nil {
			return nil, err
		}
		pub := signer.PublicKey()
		s.HostKeys = append(s.HostKeys, vmimage.HostKey{
			Type:        pub.Type(),
			Fingerprint: ssh.FingerprintSHA256(pub),
			PublicKey:   strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub))),
		})
		files = append(files, path)
	}
	sort.Slice(s.HostKeys, func(i, j int) bool { return s.HostKeys[i].Type < s.HostKeys[j].Type })
	sort.Strings(files)
	return files, nil
}

func (s *SSHD) knownHostsLines() []byte {
	var b bytes.Buffer
	for _, k := range s.HostKeys {
		fmt.Fprintf(&b, "[%s]:%d %s\n", s.Host, s.Port, k.PublicKey)
	}
	return b.Bytes()
}

func writeAuthorizedKeys(dir string, users []*User) error {
	ak := filepath.Join(dir, "authorized_keys")
	if err := os.Mkdir(ak, 0o755); err != nil {
		return err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return err
	}
	for _, u := range users {
		if err := os.WriteFile(filepath.Join(ak, u.Name), []byte(u.AuthorizedKey+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// prepareIsolation makes the files bound over /etc/hostname and
// /etc/init.d: a hostname file and an init directory holding one fake
// service, "ektsvc", whose restarts are appended to InitDir/ektsvc.log.
func (s *SSHD) prepareIsolation() error {
	s.HostnameFile = filepath.Join(s.Dir, "hostname")
	if err := os.WriteFile(s.HostnameFile, []byte("peertest\n"), 0o644); err != nil {
		return err
	}
	s.InitDir = filepath.Join(s.Dir, "init.d")
	if err := os.Mkdir(s.InitDir, 0o755); err != nil {
		return err
	}
	svc := "#!/bin/sh\necho \"$1\" >> " + filepath.Join(s.InitDir, "ektsvc.log") + "\n"
	return os.WriteFile(filepath.Join(s.InitDir, "ektsvc"), []byte(svc), 0o755)
}

// findTool returns the first of paths that exists, or skips the test.
func findTool(tb testing.TB, name string, paths ...string) string {
	tb.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	tb.Skipf("needs %s: run `make deps` to install it", name)
	return ""
}

// lockedBuffer is a bytes.Buffer safe for concurrent writers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
