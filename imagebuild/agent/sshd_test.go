package agent

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// startServer runs a Server on a loopback port for the current OS user
// (named "tester" in SSH), with home in a temp dir.
func startServer(t *testing.T) (addr string, home string, clientKey ssh.Signer) {
	t.Helper()
	_, hostPriv, _ := ed25519.GenerateKey(rand.Reader)
	hostKey, _ := ssh.NewSignerFromKey(hostPriv)
	_, cliPriv, _ := ed25519.GenerateKey(rand.Reader)
	clientKey, _ = ssh.NewSignerFromKey(cliPriv)
	home = t.TempDir()
	os.MkdirAll(filepath.Join(home, ".ssh"), 0o700)
	os.WriteFile(filepath.Join(home, ".ssh", "authorized_keys"), ssh.MarshalAuthorizedKey(clientKey.PublicKey()), 0o600)
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	srv := &Server{
		HostKeys: []ssh.Signer{hostKey},
		Users:    []User{{Name: "tester", PasswordHash: HashPassword("secret")}},
		Lookup: func(name string) (*user.User, error) {
			if name != "tester" {
				return nil, errors.New("no such user")
			}
			u := *me
			u.Username, u.HomeDir = "tester", home
			return &u, nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), home, clientKey
}

func dial(t *testing.T, addr string, auth ssh.AuthMethod) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: "tester", Auth: []ssh.AuthMethod{auth},
		HostKeyCallback: ssh.InsecureIgnoreHostKey()})
}

func TestServerAuth(t *testing.T) {
	addr, _, key := startServer(t)
	if _, err := dial(t, addr, ssh.Password("wrong")); err == nil {
		t.Error("wrong password accepted")
	}
	c, err := dial(t, addr, ssh.Password("secret"))
	if err != nil {
		t.Fatalf("password login: %v", err)
	}
	c.Close()
	c, err = dial(t, addr, ssh.PublicKeys(key))
	if err != nil {
		t.Fatalf("key login: %v", err)
	}
	c.Close()
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewSignerFromKey(other)
	if _, err := dial(t, addr, ssh.PublicKeys(otherKey)); err == nil {
		t.Error("key not in authorized_keys accepted")
	}
}

func TestServerSessions(t *testing.T) {
	addr, home, _ := startServer(t)
	c, err := dial(t, addr, ssh.Password("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	s, _ := c.NewSession()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	s.Setenv("EK_VAR", "v1")
	s.Stdin = strings.NewReader("from stdin\n")
	err = s.Run(`echo "$EK_VAR $HOME"; cat; echo oops >&2; pwd; exit 3`)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 3 {
		t.Errorf("exit = %v; want status 3", err)
	}
	if want := "v1 " + home + "\nfrom stdin\n" + home + "\n"; out.String() != want {
		t.Errorf("stdout = %q; want %q", out.String(), want)
	}
	if errb.String() != "oops\n" {
		t.Errorf("stderr = %q; want oops", errb.String())
	}

	s, _ = c.NewSession()
	if err := s.RequestPty("vt100", 24, 80, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Output("tty; echo $TERM; stty size")
	if err != nil || !strings.Contains(string(got), "/dev/pts/") || !strings.Contains(string(got), "vt100") || !strings.Contains(string(got), "24 80") {
		t.Errorf("pty session: %q, %v", got, err)
	}

	s, _ = c.NewSession()
	if err := s.Run("kill -TERM $$"); err == nil {
		t.Error("killed shell reported success")
	} else if errors.As(err, &ee) && ee.Signal() != "TERM" {
		t.Errorf("signal = %q; want TERM", ee.Signal())
	}

	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	f, err := sc.Create("up.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "sftp data")
	f.Close()
	if raw, _ := os.ReadFile(filepath.Join(home, "up.txt")); string(raw) != "sftp data" {
		t.Errorf("uploaded = %q; want it in the user's home", raw)
	}
}

func TestServerRejectsOtherChannels(t *testing.T) {
	addr, _, _ := startServer(t)
	c, err := dial(t, addr, ssh.Password("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Dial("tcp", "127.0.0.1:1"); err == nil {
		t.Error("direct-tcpip accepted")
	}
	s, _ := c.NewSession()
	if err := s.RequestSubsystem("netconf"); err == nil {
		t.Error("unknown subsystem accepted")
	}
}

// TestServerSessionLimit: MaxSessions sessions run at once on one
// connection (lesson scripts open one per command without waiting); the
// next is refused as a resource shortage, and a session that ends frees
// its place.
func TestServerSessionLimit(t *testing.T) {
	addr, _, _ := startServer(t)
	c, err := dial(t, addr, ssh.Password("secret"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sessions := make([]*ssh.Session, 0, MaxSessions)
	for range MaxSessions {
		s, err := c.NewSession()
		if err != nil {
			t.Fatalf("session %d of %d: %v", len(sessions)+1, MaxSessions, err)
		}
		sessions = append(sessions, s)
	}
	_, err = c.NewSession()
	var oce *ssh.OpenChannelError
	if !errors.As(err, &oce) || oce.Reason != ssh.ResourceShortage || !strings.Contains(oce.Message, "at most 100 at once") {
		t.Fatalf("session %d: %v; want a resource shortage", MaxSessions+1, err)
	}
	if out, err := sessions[0].CombinedOutput("echo freed"); err != nil || strings.TrimSpace(string(out)) != "freed" {
		t.Fatalf("run in session 1: %q, %v", out, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, err := c.NewSession()
		if err == nil {
			s.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after session 1 ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, s := range sessions[1:] {
		s.Close()
	}
}
