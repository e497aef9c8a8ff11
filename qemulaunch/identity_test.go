package qemulaunch

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/vmimage"
)

// TestWithIdentity: an image that takes a per-instance identity gets one
// kept in the state directory, handed to QEMU as fw_cfg, and its keys
// pinned instead of the manifest's; InstanceHostKeys (what the lesson
// orchestration pins before the launch) returns the same keys. Other
// images pass unchanged.
func TestWithIdentity(t *testing.T) {
	im := diskImage()
	im.Manifest.Identity = vmimage.IdentityFWCfg
	im.Manifest.HostKeys = nil
	state := t.TempDir()
	pinned, err := InstanceHostKeys(state, "vqfx", im.Manifest)
	if err != nil || len(pinned) != 2 {
		t.Fatalf("InstanceHostKeys = %v, %v", pinned, err)
	}
	cfg, err := withIdentity(Config{Name: "vqfx", Image: im, Accel: AccelTCG, StateDir: state})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Image.Manifest.HostKeys, pinned) || len(im.Manifest.HostKeys) != 0 {
		t.Errorf("pinned %v; want the instance's %v (the image's manifest untouched)", cfg.Image.Manifest.HostKeys, pinned)
	}
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	want := "-fw_cfg name=" + vmimage.IdentityFWCfgName + ",file=" + filepath.Join(state, identityFWCfgFile)
	if !strings.Contains(strings.Join(p.Args, " "), want) {
		t.Errorf("args lack %q:\n%s", want, p.Command())
	}
	raw, err := os.ReadFile(filepath.Join(state, identityFWCfgFile))
	if err != nil || !strings.HasPrefix(string(raw), "hostname vqfx\n") {
		t.Errorf("fw_cfg file: %q, %v", raw, err)
	}
	plain := diskImage()
	same, err := withIdentity(Config{Name: "vqfx", Image: plain, StateDir: t.TempDir()})
	if err != nil || same.Image != plain || len(same.ExtraArgs) != 0 {
		t.Errorf("an image without identity changed: %+v, %v", same, err)
	}
}

// TestWithGivenIdentity: an identity made elsewhere (--identity; a
// cluster runtime's Secret) is what the guest gets and what is pinned,
// and none is made in the state directory; one that cannot be read fails
// the start (fail closed) instead of a fresh identity nobody pinned.
func TestWithGivenIdentity(t *testing.T) {
	im := diskImage()
	im.Manifest.Identity = vmimage.IdentityFWCfg
	im.Manifest.HostKeys = nil
	made := t.TempDir()
	id, err := vmimage.LoadOrCreateIdentity(made, "vqfx")
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	l := Launch{Image: im.Dir, Name: "vqfx", State: state, Identity: filepath.Join(made, vmimage.IdentityFile)}
	back, err := ParseLaunch(nil, getenv(l.Env()), io.Discard)
	if err != nil || back.Identity != l.Identity {
		t.Fatalf("ENDPOINT_IDENTITY read back as %q (%v)", back.Identity, err)
	}
	cfg := l.config(im)
	cfg.Accel = AccelTCG
	cfg, err = withIdentity(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(cfg.Image.Manifest.HostKeys, id.HostKeys()) {
		t.Errorf("pinned %v; want the given identity's %v", cfg.Image.Manifest.HostKeys, id.HostKeys())
	}
	if _, err := os.Stat(filepath.Join(state, vmimage.IdentityFile)); err == nil {
		t.Errorf("an identity was made in the state directory although one was given")
	}
	raw, err := os.ReadFile(filepath.Join(state, identityFWCfgFile))
	if err != nil || string(raw) != string(id.FWCfg()) {
		t.Errorf("fw_cfg file %q (%v); want the given identity's", raw, err)
	}
	cfg = l.config(im)
	cfg.IdentityFile = filepath.Join(made, "missing.json")
	if _, err := withIdentity(cfg); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "missing.json") {
		t.Errorf("a missing identity file: %v; want ErrConfig naming it", err)
	}
}
