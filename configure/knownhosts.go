package configure

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/crypto/ssh"
)

// KnownHostsEnv is the environment variable through which the python
// method tells a lesson's script where the target's host keys are: an
// OpenSSH known_hosts file listing exactly the keys the target's policy
// trusts (its pinned keys and its known_hosts file), under the name
// "[ANTIDOTE_TARGET_HOST]:ANTIDOTE_TARGET_PORT" (or the bare host on port
// 22). A script verifies the server against it — paramiko:
//
//	client.load_host_keys(os.environ["ANTIDOTE_TARGET_KNOWN_HOSTS"])
//	client.set_missing_host_key_policy(paramiko.RejectPolicy())
//
// netmiko (and NAPALM's netmiko-based drivers, which get it through
// optional_args): ssh_strict=True, system_host_keys=False,
// alt_host_keys=True, alt_key_file=os.environ["ANTIDOTE_TARGET_KNOWN_HOSTS"].
// It is empty when the target's policy is InsecureIgnore.
const KnownHostsEnv = "ANTIDOTE_TARGET_KNOWN_HOSTS"

// knownHostsFile writes dir/known_hosts with every key t's policy trusts
// for t's SSH address and returns its path. A pinned key without its
// public half is fetched from the server and kept only if its fingerprint
// matches. A target without a policy is refused (ErrNoHostKeyPolicy).
func knownHostsFile(ctx context.Context, t Target, dial DialOptions, dir string) (string, error) {
	p := t.HostKeys
	if p.empty() {
		return "", fmt.Errorf("%w for %s: pin the image's host keys, give a known_hosts file, or opt in to InsecureIgnore", ErrNoHostKeyPolicy, t.SSHAddr())
	}
	var b strings.Builder
	if p.KnownHostsFile != "" {
		raw, err := os.ReadFile(p.KnownHostsFile)
		if err != nil {
			return "", fmt.Errorf("known_hosts: %w", err)
		}
		b.Write(raw)
		if len(raw) > 0 && raw[len(raw)-1] != '\n' {
			b.WriteByte('\n')
		}
	}
	if len(p.Pinned) > 0 {
		lines, err := pinnedKnownHosts(ctx, t, dial)
		if err != nil {
			return "", err
		}
		b.WriteString(lines)
	}
	kh := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(kh, []byte(b.String()), 0o600); err != nil {
		return "", err
	}
	return kh, nil
}

// pinnedKnownHosts renders the pinned keys as known_hosts lines. A pinned
// entry without its public key is fetched from the server (and accepted
// only if its fingerprint matches).
func pinnedKnownHosts(ctx context.Context, t Target, dial DialOptions) (string, error) {
	host := knownHostsName(t)
	var b strings.Builder
	missing := false
	for _, k := range t.HostKeys.Pinned {
		if k.PublicKey == "" {
			missing = true
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(k.PublicKey))
		if err != nil {
			return "", fmt.Errorf("%w: pinned host key %s: %w", ErrBadConfig, k.Fingerprint, err)
		}
		if ssh.FingerprintSHA256(pub) != k.Fingerprint {
			return "", fmt.Errorf("%w: pinned host key's public key has fingerprint %s, not %s", ErrBadConfig, ssh.FingerprintSHA256(pub), k.Fingerprint)
		}
		fmt.Fprintf(&b, "%s %s", host, ssh.MarshalAuthorizedKey(pub))
	}
	if missing {
		pub, err := fetchHostKey(ctx, t, dial)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s %s", host, ssh.MarshalAuthorizedKey(pub))
	}
	return b.String(), nil
}

// scriptKnownHosts is the KnownHostsEnv setting for a script run against
// t: a known_hosts file in a fresh temporary directory (removed by the
// returned func), or "" under InsecureIgnore.
func scriptKnownHosts(ctx context.Context, t Target) (string, func(), error) {
	if t.HostKeys.InsecureIgnore {
		return "", func() {}, nil
	}
	dir, err := os.MkdirTemp("", "ek-knownhosts-")
	if err != nil {
		return "", nil, err
	}
	kh, err := knownHostsFile(ctx, t, DialOptions{}, dir)
	if err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	return kh, func() { os.RemoveAll(dir) }, nil
}
