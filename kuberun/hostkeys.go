package kuberun

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/vmimage"
)

// identities makes (or, placing again, reuses) the per-instance identity
// of each endpoint whose image takes one (vmimage.IdentityFWCfg), on this
// machine: in the instance directory, ENDPOINT/identity.json (0600), so
// that later commands in other processes pin the same keys. It returns
// each identity as the Secret carries it, and its file, by endpoint.
func identities(p *endpointkit.Placement) (data map[string][]byte, files map[string]string, err error) {
	data, files = map[string][]byte{}, map[string]string{}
	for _, el := range p.Endpoints {
		if el.Image.Manifest.Identity != vmimage.IdentityFWCfg {
			continue
		}
		name := el.Endpoint.Name
		dir := filepath.Join(p.Dir, name)
		if _, err := vmimage.LoadOrCreateIdentity(dir, name); err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: instance identity in %s: %w", name, dir, err)
		}
		file := filepath.Join(dir, vmimage.IdentityFile)
		raw, err := os.ReadFile(file)
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: instance identity: %w", name, err)
		}
		data[name], files[name] = raw, file
	}
	return data, files, nil
}

// learnsKeys reports whether the launcher learns the guest's host keys from
// its console: the image lists none and takes no per-instance identity
// (HostKeys' last case).
func learnsKeys(m vmimage.Manifest) bool {
	return m.Identity != vmimage.IdentityFWCfg && len(m.HostKeys) == 0
}

// HostKeys returns the SSH host keys to pin for the endpoint's guest: for
// an image that takes a per-instance identity, the keys of the identity
// Place made on this machine and handed to the pod (its Secret); else the
// manifest's; else those the launcher learned from the guest's console,
// read from its state directory in the pod (`endpoint hostkeys`) through
// the API server — an authenticated channel, so nothing is taken on trust
// from the network. None before the guest's first boot.
func (r *Runtime) HostKeys(ctx context.Context, ep endpointkit.RunningEndpoint, m vmimage.Manifest) ([]vmimage.HostKey, error) {
	switch {
	case m.Identity == vmimage.IdentityFWCfg:
		if ep.IdentityFile == "" {
			return nil, fmt.Errorf("its image takes a per-instance identity but the instance record names none on this machine (placed by an older endpointkit?): take the instance down and up again")
		}
		id, err := vmimage.LoadIdentity(ep.IdentityFile)
		if err != nil {
			return nil, fmt.Errorf("%w (the identity Place made for pod %s; without it the guest's keys cannot be pinned: take the instance down and up again)", err, ep.Pod)
		}
		return id.HostKeys(), nil
	case len(m.HostKeys) > 0:
		return m.HostKeys, nil
	}
	var stdout, stderr bytes.Buffer
	argv := []string{kubeletLauncher, "hostkeys", "--state", ep.StateDir}
	if err := r.exec(ctx, ep, argv, nil, &stdout, &stderr); err != nil {
		return nil, fmt.Errorf("pod %s: %s: %w: %s (an endpoint image built before `endpoint hostkeys`? rebuild it)", ep.Pod, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	var keys []vmimage.HostKey
	if err := json.Unmarshal(stdout.Bytes(), &keys); err != nil {
		return nil, fmt.Errorf("pod %s: %s printed %q: %w", ep.Pod, strings.Join(argv, " "), stdout.String(), err)
	}
	return keys, nil
}
