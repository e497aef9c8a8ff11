package vmimage

import (
	"encoding/base64"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// TestIdentity: an identity has fresh ed25519 and ECDSA keys whose public
// halves match the private keys the guest gets through fw_cfg, is kept
// (0600) and reused for the same hostname, and replaced for another.
func TestIdentity(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	id, err := LoadOrCreateIdentity(dir, "r1")
	if err != nil {
		t.Fatal(err)
	}
	if len(id.Keys) != 2 || id.Keys[0].Type != "ecdsa-sha2-nistp256" || id.Keys[1].Type != "ssh-ed25519" {
		t.Fatalf("keys = %+v", id.HostKeys())
	}
	lines := strings.Split(strings.TrimSpace(string(id.FWCfg())), "\n")
	if lines[0] != "hostname r1" || len(lines) != 3 {
		t.Fatalf("fw_cfg file:\n%s", id.FWCfg())
	}
	for i, l := range lines[1:] {
		name, b64, _ := strings.Cut(l, " ")
		pemKey, err := base64.StdEncoding.DecodeString(b64)
		if err != nil || name != id.Keys[i].File {
			t.Fatalf("line %q: %v", l, err)
		}
		signer, err := ssh.ParsePrivateKey(pemKey)
		if err != nil {
			t.Fatal(err)
		}
		if ssh.FingerprintSHA256(signer.PublicKey()) != id.Keys[i].Fingerprint {
			t.Errorf("%s: private key does not match the pinned fingerprint", name)
		}
	}
	st, err := os.Stat(filepath.Join(dir, IdentityFile))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("identity file: %v, mode %v; want 0600", err, st.Mode())
	}
	again, err := LoadOrCreateIdentity(dir, "r1")
	if err != nil || again.Keys[0].Fingerprint != id.Keys[0].Fingerprint {
		t.Errorf("the kept identity was not reused: %v", err)
	}
	other, err := LoadOrCreateIdentity(dir, "r2")
	if err != nil || other.Hostname != "r2" || other.Keys[0].Fingerprint == id.Keys[0].Fingerprint {
		t.Errorf("another hostname's identity: %+v, %v", other, err)
	}
	if _, err := NewIdentity("bad_name"); err == nil {
		t.Error("NewIdentity accepted a hostname that is not a DNS label")
	}
}

// TestLoadIdentity: an identity saved elsewhere (handed to a launcher)
// reads back whole; a missing file wraps fs.ErrNotExist; a file that is
// not an identity, or one without keys, is refused, and
// LoadOrCreateIdentity does not silently replace it.
func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	id, err := LoadOrCreateIdentity(dir, "r1")
	if err != nil {
		t.Fatal(err)
	}
	got, err := LoadIdentity(filepath.Join(dir, IdentityFile))
	if err != nil || got.Hostname != "r1" || len(got.Keys) != 2 || got.Keys[1].PrivatePEM != id.Keys[1].PrivatePEM {
		t.Fatalf("LoadIdentity = %+v, %v; want the saved identity", got, err)
	}
	if _, err := LoadIdentity(filepath.Join(dir, "none.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v; want fs.ErrNotExist", err)
	}
	for name, content := range map[string]string{"garbage": "not json", "no keys": `{"hostname":"r1","keys":[]}`} {
		bad := t.TempDir()
		os.WriteFile(filepath.Join(bad, IdentityFile), []byte(content), 0o600)
		if _, err := LoadIdentity(filepath.Join(bad, IdentityFile)); err == nil {
			t.Errorf("%s: LoadIdentity accepted it", name)
		}
		if _, err := LoadOrCreateIdentity(bad, "r1"); err == nil || !strings.Contains(err.Error(), "remove it") {
			t.Errorf("%s: LoadOrCreateIdentity: %v; want an error saying to remove it", name, err)
		}
	}
}
