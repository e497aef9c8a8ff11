package vmimage

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

func TestWriteLoadRoundTrip(t *testing.T) {
	dir := t.TempDir()
	m := Manifest{
		Slug: "tiny", Kind: KindInitramfs, Kernel: "vmlinux", KernelFormat: KernelPVH,
		Initrd: "initramfs.cpio", Cmdline: "console=ttyS0",
		QEMU:      QEMUHints{MemoryMiB: 256, NICModel: "virtio-net-pci"},
		Readiness: Readiness{SerialRegex: "^ENDPOINT READY", SSHPorts: []int{22}},
		Users:     Credentials{SSHUser: "antidote", SSHPassword: "antidotepassword"},
		HostKeys:  []HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:x"}},
	}
	if err := Write(dir, m); err != nil {
		t.Fatal(err)
	}
	im, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	m.Version = Version
	if !reflect.DeepEqual(im.Manifest, m) {
		t.Fatalf("Load = %+v; want %+v", im.Manifest, m)
	}
	if got := im.Path("vmlinux"); got != filepath.Join(im.Dir, "vmlinux") {
		t.Fatalf("Path = %s", got)
	}
}

func TestLoadRejectsUnknownVersion(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, ManifestFile), []byte(`{"version": 99, "slug": "x"}`), 0o644)
	if _, err := Load(dir); !errors.Is(err, ErrVersion) {
		t.Fatalf("Load = %v; want ErrVersion", err)
	}
}
