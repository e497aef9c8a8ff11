package qemulaunch

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func testAuthorizedKey(t testing.TB) (string, string) {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp))), ssh.FingerprintSHA256(sp)
}

// The console's last host-key block is read; noise inside it is skipped;
// a missing or empty block is ErrNoHostKeys.
func TestParseHostKeyBlock(t *testing.T) {
	old, _ := testAuthorizedKey(t)
	key, fp := testAuthorizedKey(t)
	out := "boot\n" + HostKeysBegin + "\n" + old + "\n" + HostKeysEnd + "\nreboot\n" +
		HostKeysBegin + "\r\n[ 1.2] random: crng init done\r\n" + key + " root@guest\r\n" + HostKeysEnd + "\r\nendpointkit: ready\n"
	keys, err := parseHostKeyBlock([]byte(out))
	if err != nil || len(keys) != 1 || keys[0].Fingerprint != fp || keys[0].Type != "ssh-ed25519" {
		t.Fatalf("keys %+v, %v; want the last block's %s", keys, err, fp)
	}
	for name, bad := range map[string]string{
		"none":  "endpointkit: ready\n",
		"open":  HostKeysBegin + "\n" + key + "\n",
		"empty": HostKeysBegin + "\n" + HostKeysEnd + "\n",
	} {
		if _, err := parseHostKeyBlock([]byte(bad)); !errors.Is(err, ErrNoHostKeys) {
			t.Errorf("%s: %v; want ErrNoHostKeys", name, err)
		}
	}
}

// Console output is the guest's to write: no input panics the parser, and
// every key it returns parses.
func FuzzParseHostKeyBlock(f *testing.F) {
	key, _ := testAuthorizedKey(f)
	f.Add([]byte(HostKeysBegin + "\n" + key + "\n" + HostKeysEnd + "\n"))
	f.Add([]byte(HostKeysEnd + HostKeysBegin))
	f.Add([]byte(HostKeysBegin + "\nssh-ed25519 AAAA\n" + HostKeysEnd))
	f.Fuzz(func(t *testing.T, out []byte) {
		keys, err := parseHostKeyBlock(out)
		if err == nil && len(keys) == 0 {
			t.Fatal("no error and no keys")
		}
		for _, k := range keys {
			if _, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey)); err != nil {
				t.Fatalf("returned key %q does not parse: %v", k.PublicKey, err)
			}
		}
	})
}

// With no keys to pin, every key is refused: nothing is taken on trust.
func TestHostKeyCallbackRefusesWithoutKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	if err := HostKeyCallback(nil)("10.0.0.1:22", nil, sp); !errors.Is(err, ErrNoHostKeys) {
		t.Errorf("no pinned keys: %v; want ErrNoHostKeys", err)
	}
	keys, err := parseHostKeyBlock([]byte(HostKeysBegin + "\n" + string(ssh.MarshalAuthorizedKey(sp)) + HostKeysEnd + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := HostKeyCallback(keys)("10.0.0.1:22", nil, sp); err != nil {
		t.Errorf("the pinned key: %v", err)
	}
}
