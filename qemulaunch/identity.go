package qemulaunch

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/endpointkit/endpointkit/vmimage"
)

// identityFWCfgFile is the instance identity as the guest reads it, in
// the state directory (mode 0600), given to QEMU's -fw_cfg.
const identityFWCfgFile = "identity.fwcfg"

// InstanceHostKeys returns the SSH host keys to pin for an instance of m
// whose state directory is stateDir: for an image that takes a
// per-instance identity (vmimage.IdentityFWCfg), the keys of the identity
// kept in stateDir — made now if the instance has none yet, and the same
// ones [Start] gives the guest; otherwise [PinnedHostKeys]: the manifest's,
// else those learned from the guest's console (none before its first
// boot). Callers that pin keys before the launch (a lesson's known_hosts)
// use it, and again once the guests are up.
func InstanceHostKeys(stateDir, name string, m vmimage.Manifest) ([]vmimage.HostKey, error) {
	if m.Identity != vmimage.IdentityFWCfg {
		return PinnedHostKeys(StateDir(stateDir), m), nil
	}
	id, err := vmimage.LoadOrCreateIdentity(stateDir, name)
	if err != nil {
		return nil, err
	}
	return id.HostKeys(), nil
}

// withIdentity gives a VM of an image that takes a per-instance identity
// its identity (Config.IdentityFile, else the one kept in the state
// directory, so a restart keeps the keys): the guest reads it through
// fw_cfg, a channel the network cannot reach, and the identity's host
// keys replace the manifest's (none) for readiness and everything that
// pins keys. Other images pass unchanged.
func withIdentity(cfg Config) (Config, error) {
	if cfg.Image.Manifest.Identity != vmimage.IdentityFWCfg {
		return cfg, nil
	}
	var id *vmimage.Identity
	var err error
	if cfg.IdentityFile != "" {
		if id, err = vmimage.LoadIdentity(cfg.IdentityFile); err != nil {
			return cfg, fmt.Errorf("%w: instance identity given (--identity): %v; whoever placed the endpoint makes it (a cluster runtime: its Secret)", ErrConfig, err)
		}
	} else if id, err = vmimage.LoadOrCreateIdentity(cfg.StateDir, cfg.Name); err != nil {
		return cfg, fmt.Errorf("%w: instance identity: %v", ErrConfig, err)
	}
	file := filepath.Join(cfg.StateDir, identityFWCfgFile)
	if err := os.WriteFile(file, id.FWCfg(), 0o600); err != nil {
		return cfg, fmt.Errorf("instance identity: %w", err)
	}
	im := *cfg.Image
	im.Manifest.HostKeys = id.HostKeys()
	cfg.Image = &im
	cfg.ExtraArgs = append(slices.Clip(cfg.ExtraArgs), "-fw_cfg", "name="+vmimage.IdentityFWCfgName+",file="+qemuOpt(file))
	return cfg, nil
}
