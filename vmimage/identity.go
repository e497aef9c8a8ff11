package vmimage

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"golang.org/x/crypto/ssh"
)

// Per-instance identity. An image whose manifest says Identity:
// IdentityFWCfg carries no SSH host keys of its own (a baked disk is the
// same bytes for every instance, and a published image must not hold
// private keys). The launcher makes an [Identity] for each instance —
// hostname and fresh SSH host keys — pins its public keys, and hands it to
// the guest as QEMU's fw_cfg item [IdentityFWCfgName] (file
// [Identity.FWCfg]): a channel from the host's QEMU process to the guest's
// root only, which nothing on the network can write. The guest's
// endpointkit-identity service installs it before sshd starts; without it
// the guest has no host keys and sshd does not start (fail closed). The
// machine-id is left empty in the image, so each instance's systemd makes
// its own.
const (
	// IdentityFWCfg is Manifest.Identity for images that take their
	// identity from fw_cfg.
	IdentityFWCfg = "fw_cfg"
	// IdentityFWCfgName is the fw_cfg item's name (the guest reads
	// /sys/firmware/qemu_fw_cfg/by_name/opt/endpointkit/identity/raw).
	IdentityFWCfgName = "opt/endpointkit/identity"
	// IdentityFile is where [LoadOrCreateIdentity] keeps an instance's
	// identity in its state directory (mode 0600: it holds private keys).
	IdentityFile = "identity.json"
)

// HostKeyPair is an SSH host key: the public half as a manifest lists it,
// and the private key in OpenSSH PEM form.
type HostKeyPair struct {
	HostKey
	// File is the key's file name in /etc/ssh (ssh_host_ed25519_key).
	File       string `json:"file"`
	PrivatePEM string `json:"privatePEM"`
}

// GenerateHostKeys makes fresh ed25519 and ECDSA P-256 host keys, sorted
// by type.
func GenerateHostKeys() ([]HostKeyPair, error) {
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	var pairs []HostKeyPair
	for name, key := range map[string]crypto.Signer{"ed25519": ed, "ecdsa": ec} {
		block, err := ssh.MarshalPrivateKey(key, "")
		if err != nil {
			return nil, err
		}
		pub, err := ssh.NewPublicKey(key.Public())
		if err != nil {
			return nil, err
		}
		authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))
		pairs = append(pairs, HostKeyPair{
			HostKey: HostKey{Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub), PublicKey: authorized},
			File:    "ssh_host_" + name + "_key", PrivatePEM: string(pem.EncodeToMemory(block)),
		})
	}
	sort.Slice(pairs, func(i, j int) bool { return pairs[i].Type < pairs[j].Type })
	return pairs, nil
}

// Identity is one instance's identity.
type Identity struct {
	Hostname string        `json:"hostname"`
	Keys     []HostKeyPair `json:"keys"`
}

var hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?$`)

// NewIdentity makes an identity with fresh host keys. hostname must be a
// DNS label.
func NewIdentity(hostname string) (*Identity, error) {
	if !hostnameRE.MatchString(hostname) {
		return nil, fmt.Errorf("vmimage: identity: hostname %q is not a DNS label", hostname)
	}
	keys, err := GenerateHostKeys()
	if err != nil {
		return nil, err
	}
	return &Identity{Hostname: hostname, Keys: keys}, nil
}

// HostKeys returns the public halves, to pin.
func (id *Identity) HostKeys() []HostKey {
	out := make([]HostKey, len(id.Keys))
	for i, k := range id.Keys {
		out[i] = k.HostKey
	}
	return out
}

// FWCfg renders the identity as the guest reads it: one "NAME VALUE" line
// each, "hostname NAME" and "ssh_host_TYPE_key BASE64-OF-PEM".
func (id *Identity) FWCfg() []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "hostname %s\n", id.Hostname)
	for _, k := range id.Keys {
		fmt.Fprintf(&b, "%s %s\n", k.File, base64.StdEncoding.EncodeToString([]byte(k.PrivatePEM)))
	}
	return []byte(b.String())
}

// LoadIdentity reads an identity saved as JSON (an instance's
// IdentityFile, or one made elsewhere and handed to the launcher). An
// identity without keys or a hostname is an error; a missing file is one
// wrapping fs.ErrNotExist.
func LoadIdentity(path string) (*Identity, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("vmimage: identity: %w", err)
	}
	var id Identity
	if err := json.Unmarshal(raw, &id); err != nil {
		return nil, fmt.Errorf("vmimage: identity %s: %w", path, err)
	}
	if id.Hostname == "" || len(id.Keys) == 0 {
		return nil, fmt.Errorf("vmimage: identity %s: no hostname or no keys", path)
	}
	return &id, nil
}

// LoadOrCreateIdentity returns the identity kept in dir (an instance's
// state directory, created if missing), making and saving one for
// hostname the first time, so that a restarted instance keeps its keys
// and whoever pinned them before the launch (the lesson orchestration)
// and the launcher agree. A saved identity for another hostname is
// replaced.
func LoadOrCreateIdentity(dir, hostname string) (*Identity, error) {
	path := filepath.Join(dir, IdentityFile)
	if id, err := LoadIdentity(path); err == nil {
		if id.Hostname == hostname {
			return id, nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w (remove it to make a new identity)", err)
	}
	id, err := NewIdentity(hostname)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("vmimage: identity: %w", err)
	}
	raw, err := json.MarshalIndent(id, "", "  ")
	if err != nil {
		return nil, err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return nil, fmt.Errorf("vmimage: identity: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return nil, fmt.Errorf("vmimage: identity: %w", err)
	}
	return id, nil
}
