package qemulaunch

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/google/renameio/v2"
	"golang.org/x/crypto/ssh"
)

// Host keys are never taken on trust. An image lists its guest's SSH host
// keys in its manifest (made at build time) and everything that connects
// pins them. An image that lists none (a vendor disk) has them learned at
// every boot from its serial console — a channel only the guest writes,
// which nothing on the network can — where the guest prints them between
// HostKeysBegin and HostKeysEnd (the convention of cloud-init, and of the
// endpointkit agent); they are kept in the state directory's hostkeys file
// ([PinnedHostKeys]) and pinned from then on. A guest that prints none does
// not become ready (fail closed).
const (
	HostKeysBegin = "-----BEGIN SSH HOST KEY KEYS-----"
	HostKeysEnd   = "-----END SSH HOST KEY KEYS-----"
)

// ErrNoHostKeys: the image lists no SSH host keys and the guest printed
// none on its console.
var ErrNoHostKeys = errors.New("qemulaunch: no SSH host keys to pin")

// hostKeysEnd matches the line that ends a console host-key block.
var hostKeysEnd = regexp.MustCompile(regexp.QuoteMeta(HostKeysEnd))

// PinnedHostKeys returns the SSH host keys to pin for the guest of m whose
// launcher state directory is dir: the manifest's, else those the launcher
// learned from the guest's console (none before its first boot).
func PinnedHostKeys(dir StateDir, m vmimage.Manifest) []vmimage.HostKey {
	if len(m.HostKeys) > 0 {
		return m.HostKeys
	}
	raw, err := os.ReadFile(dir.HostKeys())
	if err != nil {
		return nil
	}
	var keys []vmimage.HostKey
	if json.Unmarshal(raw, &keys) != nil {
		return nil
	}
	return keys
}

// learnHostKeys waits for the guest's host-key block on the console,
// records the keys in the state directory and pins them for readiness.
func (vm *VM) learnHostKeys(ctx context.Context) error {
	if _, err := vm.console.WaitFor(ctx, hostKeysEnd); err != nil {
		return fmt.Errorf("%w: image %s lists none and the guest printed none between %q and %q on its console (%v): rebuild the image with its keys, or have it print them",
			ErrNoHostKeys, imageManifest(vm.cfg.Image), HostKeysBegin, HostKeysEnd, err)
	}
	keys, err := parseHostKeyBlock(vm.console.Tail(consoleRing))
	if err != nil {
		return err
	}
	raw, _ := json.MarshalIndent(keys, "", "  ")
	if err := renameio.WriteFile(vm.plan.Dir.HostKeys(), append(raw, '\n'), 0o644); err != nil {
		return err
	}
	vm.mu.Lock()
	vm.hostKeys = keys
	vm.mu.Unlock()
	vm.log.Info("host keys learned from the console", "keys", len(keys))
	return nil
}

// parseHostKeyBlock reads the keys of the last host-key block in console
// output.
func parseHostKeyBlock(out []byte) ([]vmimage.HostKey, error) {
	end := bytes.LastIndex(out, []byte(HostKeysEnd))
	begin := bytes.LastIndex(out[:max(end, 0)], []byte(HostKeysBegin))
	if end < 0 || begin < 0 {
		return nil, fmt.Errorf("%w: the console's host-key block is incomplete", ErrNoHostKeys)
	}
	var keys []vmimage.HostKey
	for _, line := range strings.Split(string(out[begin+len(HostKeysBegin):end]), "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pub, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err != nil {
			continue // console noise inside the block
		}
		keys = append(keys, vmimage.HostKey{Type: pub.Type(), Fingerprint: ssh.FingerprintSHA256(pub),
			PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(pub)))})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: the console's host-key block holds no key", ErrNoHostKeys)
	}
	return keys, nil
}
