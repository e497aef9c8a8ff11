package imagebuild_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// TestDiskCloudInitBoots feeds a disk that runs cloud-init (Debian with
// cloud-init, booting from its own GRUB: imagetest.CloudInitDisk) to the
// disk builder without baking (bake: false; TestBakedDiskBoots bakes), boots the image under QEMU from the disk's bootloader with
// the generated seed attached, and checks what only cloud-init acting on
// that seed can have done: the antidote user (absent from the disk) logs
// in with the seed's password and authorized key, sshd offers exactly the
// host keys the manifest pins, sudo needs no password, the hostname and
// /etc/hosts follow the slug, the first-boot step ran as root, and
// cloud-init reports done with no errors from the NoCloud seed. The
// same disk fetched by a file:// URL into a fresh raw-image store
// converts to the same qcow2.
func TestDiskCloudInitBoots(t *testing.T) {
	ektest.RequireQEMU(t)
	vendor, sum := imagetest.CloudInitDisk(t)
	dir, signer := imagetest.CloudInitRecipe(t, "path: "+vendor, sum, "bake: false\n")
	im := imagetest.Build(t, dir)
	m := im.Manifest
	if m.Kind != vmimage.KindDisk || m.Kernel != "" || m.Seed != imagebuild.SeedFile || len(m.HostKeys) != 2 {
		t.Fatalf("manifest: kind %s, kernel %q, seed %q, %d host keys; want a disk booted by its own bootloader with a seed and 2 host keys",
			m.Kind, m.Kernel, m.Seed, len(m.HostKeys))
	}

	t.Run("file URL", func(t *testing.T) {
		dir, _ := imagetest.CloudInitRecipe(t, "url: file://"+vendor, sum, "bake: false\n")
		r, err := imagebuild.LoadRecipe(dir)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		cache := t.TempDir()
		res, err := imagebuild.New(imagebuild.Options{CacheDir: cache}).BuildCached(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := res.Image.Manifest.Artifacts[imagebuild.DiskFile], m.Artifacts[imagebuild.DiskFile]; got != want {
			t.Errorf("disk from the file:// URL has sha256 %s; from the path %s", got, want)
		}
		if _, err := os.Stat(filepath.Join(cache, "disks", "sha256", sum)); err != nil {
			t.Errorf("the vendor disk is not in the fresh raw-image store: %v", err)
		}
	})

	// Boot waits for the seed's final message on the console, then logs in.
	vm := imagetest.Boot(t, im, imagetest.BootOptions{Timeout: 6 * time.Minute})
	if !strings.Contains(vm.Console(), imagebuild.CloudInitReadyMarker+" hostname=vendor-ci datasource=DataSourceNoCloud") {
		t.Errorf("console lacks the seed's final message:\n%s", vm.Console())
	}
	c := vm.SSH(t) // antidote, password from the seed, host key pinned to the manifest's
	run := func(cmd string) string { t.Helper(); return imagetest.MustRun(t, c, cmd) }

	if got := run("cloud-init status --wait"); !strings.HasSuffix(got, "status: done") {
		t.Errorf("cloud-init status = %q; want done", got)
	}
	var result struct {
		V1 struct {
			Datasource string   `json:"datasource"`
			Errors     []string `json:"errors"`
		} `json:"v1"`
	}
	if err := json.Unmarshal([]byte(run("sudo -n cat /run/cloud-init/result.json")), &result); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(result.V1.Datasource, "DataSourceNoCloud") || len(result.V1.Errors) > 0 {
		t.Errorf("cloud-init result: datasource %q, errors %q; want NoCloud and none", result.V1.Datasource, result.V1.Errors)
	}
	if got := run("sudo -n grep -c 'Adding user antidote' /var/log/cloud-init.log"); got != "1" {
		t.Errorf("cloud-init.log mentions adding antidote %s times; want 1", got)
	}
	if got := run("id -un; id -Gn"); !strings.HasPrefix(got, "antidote\n") || !strings.Contains(got, "sudo") || !strings.Contains(got, "netops") {
		t.Errorf("id = %q; want antidote in groups sudo and netops", got)
	}
	if got := run("hostname; getent hosts vendor-ci | wc -l; cat /etc/hostname"); got != "vendor-ci\n1\nvendor-ci" {
		t.Errorf("hostname, /etc/hosts entries, /etc/hostname = %q; want vendor-ci from the seed (the disk says cloudinit-base)", got)
	}
	if got := run("cat /var/lib/endpointkit-firstboot"); got != "ran as root on vendor-ci" {
		t.Errorf("first-boot step wrote %q", got)
	}
	if got := run("ls /etc/ssh/ | grep '^ssh_host_.*_key$' | tr '\\n' ' '"); got != "ssh_host_ecdsa_key ssh_host_ed25519_key" {
		t.Errorf("host keys in the guest: %q; want only the seed's ecdsa and ed25519", got)
	}
	if _, errOut, err := imagetest.Run(c, "sudo -n true"); err != nil || errOut != "" {
		t.Errorf("sudo -n true: %v, stderr %q (a warning here means /etc/hosts lacks the hostname)", err, errOut)
	}

	keyCfg := imagetest.ClientConfig(im)
	keyCfg.Auth = []ssh.AuthMethod{ssh.PublicKeys(signer)}
	kc, err := ssh.Dial("tcp", vm.SSHAddr, keyCfg)
	if err != nil {
		t.Fatalf("ssh with the seed's authorized key: %v", err)
	}
	if got := imagetest.MustRun(t, kc, "id -un"); got != "antidote" {
		t.Errorf("key login as %q", got)
	}
	kc.Close()

	vm.MustPowerDown(t, 2*time.Minute)
}
