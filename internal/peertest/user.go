// Package peertest starts real protocol peers for tests, on loopback, with
// random ports and generated keys: an OpenSSH sshd (optionally in private
// UTS and mount namespaces so hostname and service changes stay contained),
// a throw-away system user with a password, a key and password-less sudo,
// and yuma123's netconfd behind an sshd "netconf" subsystem.
//
// Everything a helper creates is removed when the test ends (t.Cleanup):
// processes, users, sudoers drop-ins, sockets and temporary directories.
// Names and ports are random, so packages tested in parallel on one machine
// do not collide. The helpers need root; they skip (naming the missing tool)
// when sshd or netconfd is not installed.
package peertest

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"golang.org/x/crypto/ssh"
)

// User is a throw-away local account for SSH tests.
type User struct {
	Name     string
	Password string
	UID, GID int
	Home     string
	// KeyFile is the path of an unencrypted OpenSSH private key (0600,
	// owned by root) whose public half is authorized for the user.
	KeyFile string
	Signer  ssh.Signer
	// AuthorizedKey is the public key in authorized_keys format.
	AuthorizedKey string
}

// NewUser creates a local user with a random name and password, a home
// directory, an ed25519 key pair and password-less sudo, and removes all of
// it when the test ends. It needs root and skips otherwise.
func NewUser(tb testing.TB) *User {
	tb.Helper()
	ektest.RequireRoot(tb)
	ektest.RequireTool(tb, "useradd", "userdel", "chpasswd")

	sweepStaleUsers()
	name := ektest.Name("ekt")
	pw := make([]byte, 12)
	if _, err := rand.Read(pw); err != nil {
		tb.Fatal(err)
	}
	u := &User{Name: name, Password: "pw-" + hex.EncodeToString(pw)}

	base, err := os.MkdirTemp("", "ekt-home-")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		tb.Fatal(err)
	}
	u.Home = filepath.Join(base, name)

	if out, err := retryLocked(func() ([]byte, error) {
		return exec.Command("useradd", "--create-home", "--home-dir", u.Home, "--shell", "/bin/bash", "--user-group",
			"--comment", fmt.Sprintf("%s%d", staleMark, os.Getpid()), name).CombinedOutput()
	}); err != nil {
		tb.Fatalf("peertest: useradd %s: %v: %s", name, err, out)
	}
	tb.Cleanup(func() {
		// Sessions of the user end when their clients disconnect; -f
		// removes the account even if one is still closing.
		if out, err := retryLocked(func() ([]byte, error) {
			return exec.Command("userdel", "--force", "--remove", name).CombinedOutput()
		}); err != nil {
			tb.Errorf("peertest: userdel %s: %v: %s", name, err, out)
		}
	})
	if out, err := retryLocked(func() ([]byte, error) {
		c := exec.Command("chpasswd")
		c.Stdin = strings.NewReader(name + ":" + u.Password + "\n")
		return c.CombinedOutput()
	}); err != nil {
		tb.Fatalf("peertest: chpasswd %s: %v: %s", name, err, out)
	}

	sudoers := filepath.Join("/etc/sudoers.d", name)
	if err := os.WriteFile(sudoers, []byte(name+" ALL=(ALL) NOPASSWD:ALL\n"), 0o440); err != nil {
		tb.Fatalf("peertest: sudoers: %v", err)
	}
	tb.Cleanup(func() { os.Remove(sudoers) })

	lu, err := user.Lookup(name)
	if err != nil {
		tb.Fatal(err)
	}
	u.UID, _ = strconv.Atoi(lu.Uid)
	u.GID, _ = strconv.Atoi(lu.Gid)

	keyDir := tb.TempDir()
	u.KeyFile = filepath.Join(keyDir, "id_ed25519")
	signer, pub, err := writeKey(u.KeyFile)
	if err != nil {
		tb.Fatal(err)
	}
	u.Signer, u.AuthorizedKey = signer, pub
	return u
}

// staleMark starts the comment (GECOS) field of every user NewUser makes,
// followed by the creating process's PID.
const staleMark = "endpointkit peertest pid "

// sweepStaleUsers removes users (and their sudoers drop-ins) left behind
// by test processes that died before their cleanup ran.
func sweepStaleUsers() {
	raw, err := os.ReadFile("/etc/passwd")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(raw), "\n") {
		f := strings.Split(line, ":")
		if len(f) < 5 || !strings.HasPrefix(f[4], staleMark) {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimPrefix(f[4], staleMark))
		if err != nil || pid <= 0 {
			continue
		}
		if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
			continue // its test process still runs
		}
		retryLocked(func() ([]byte, error) {
			return exec.Command("userdel", "--force", "--remove", f[0]).CombinedOutput()
		})
		os.Remove(filepath.Join("/etc/sudoers.d", f[0]))
	}
}

// writeKey generates an ed25519 key, stores the private half at path in
// OpenSSH format (0600) and returns its signer and authorized_keys line.
func writeKey(path string) (ssh.Signer, string, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		return nil, "", err
	}
	if err := os.WriteFile(path, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, "", err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, "", err
	}
	return signer, strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey()))), nil
}

// retryLocked runs f until the account tools stop complaining that
// /etc/passwd or /etc/shadow is locked (another test is editing them):
// up to 100 tries, 50 ms apart.
func retryLocked(f func() ([]byte, error)) ([]byte, error) {
	var out []byte
	_, err := backoff.Retry(context.Background(), func() (struct{}, error) {
		var err error
		out, err = f()
		if err == nil || !strings.Contains(strings.ToLower(string(out)), "lock") {
			return struct{}{}, backoff.Permanent(err)
		}
		return struct{}{}, err
	}, backoff.WithBackOff(backoff.NewConstantBackOff(50*time.Millisecond)), backoff.WithMaxTries(100))
	if err != nil && strings.Contains(strings.ToLower(string(out)), "lock") {
		return out, fmt.Errorf("still locked after retries: %w", err)
	}
	return out, err
}
