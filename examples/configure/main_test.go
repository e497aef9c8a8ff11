package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/peertest"
)

func TestConfigure(t *testing.T) {
	u := peertest.NewUser(t)
	sshd := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	script := filepath.Join(t.TempDir(), "setup.sh")
	os.WriteFile(script, []byte("echo configured by example\nid -un\n"), 0o644)
	var out bytes.Buffer
	args := []string{"-addr", sshd.Addr(), "-user", u.Name, "-known-hosts", sshd.KnownHosts, script}
	if err := run(context.Background(), args, u.Password, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"line 1: echo configured by example (status 0)", "  " + u.Name + "\n", "configured in"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	// A wrong host key is refused.
	out.Reset()
	bad := filepath.Join(t.TempDir(), "known_hosts")
	os.WriteFile(bad, []byte("127.0.0.1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIEhvDwmuU9rA3CcjBEqX5Nx0j1vNUyUzueUdXJLDdr1E\n"), 0o644)
	args[5] = bad
	if err := run(context.Background(), args, u.Password, &out); err == nil || !strings.Contains(err.Error(), "host key") {
		t.Errorf("wrong host key: %v", err)
	}
}
