package imagetest

import (
	"crypto/ed25519"
	"crypto/rand"
	"net"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

func TestArgs(t *testing.T) {
	im := &vmimage.Image{Dir: "/img", Manifest: vmimage.Manifest{
		Kernel: "vmlinux", Initrd: "initrd.cpio", Cmdline: "console=ttyS0", Disk: "disk.qcow2", DiskFormat: "qcow2",
		Seed: "seed.iso", QEMU: vmimage.QEMUHints{MemoryMiB: 384, NICModel: "e1000", CPU: "qemu64,+rdrand"},
	}}
	args := strings.Join(Args(im, BootOptions{Hostname: "h1", Share: "/lesson", DataNICs: 2, Drives: []string{"/x.iso"}},
		map[int]string{22: "127.0.0.1:2222"}, "/q.sock"), " ")
	for _, want := range []string{
		"-machine pc -accel tcg -m 384 -smp 1",
		"-kernel /img/vmlinux -append console=ttyS0 endpointkit.hostname=h1 -initrd /img/initrd.cpio",
		"-drive file=/img/disk.qcow2,format=qcow2,if=virtio,snapshot=on",
		"-drive file=/img/seed.iso,format=raw,if=virtio,readonly=on",
		"-drive file=/x.iso,format=raw,if=virtio,readonly=on",
		"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device e1000,netdev=n0",
		"-netdev user,id=n2,restrict=on,net=10.12.0.0/24 -device e1000,netdev=n2",
		"-virtfs local,path=/lesson,mount_tag=antidote",
		"-qmp unix:/q.sock,server=on,wait=off",
		"-cpu qemu64,+rdrand",
	} {
		if !strings.Contains(args, want) {
			t.Errorf("Args lacks %q:\n%s", want, args)
		}
	}
}

func TestArgsOverrides(t *testing.T) {
	im := &vmimage.Image{Dir: "/img", Manifest: vmimage.Manifest{
		Kernel: "vmlinux", Cmdline: "console=ttyS0 quiet", QEMU: vmimage.QEMUHints{CPU: "qemu64,+rdrand"},
	}}
	args := strings.Join(Args(im, BootOptions{Hostname: "h1", Cmdline: "console=ttyS0", CPU: "qemu64", Debug: true},
		map[int]string{22: "127.0.0.1:2222"}, "/q.sock"), " ")
	for _, want := range []string{"-cpu qemu64 ", "-append console=ttyS0 endpointkit.hostname=h1 endpointkit.debug"} {
		if !strings.Contains(args, want) {
			t.Errorf("Args lacks %q:\n%s", want, args)
		}
	}
	if strings.Contains(args, "rdrand") || strings.Contains(args, "quiet") {
		t.Errorf("the overrides did not replace the manifest's CPU and command line:\n%s", args)
	}
}

func TestClientConfigPinsManifestHostKeys(t *testing.T) {
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	known, _ := ssh.NewPublicKey(pub)
	pub2, _, _ := ed25519.GenerateKey(rand.Reader)
	other, _ := ssh.NewPublicKey(pub2)
	im := &vmimage.Image{Manifest: vmimage.Manifest{
		Users:    vmimage.Credentials{SSHUser: "antidote", SSHPassword: "pw"},
		HostKeys: []vmimage.HostKey{{Type: known.Type(), Fingerprint: ssh.FingerprintSHA256(known)}},
	}}
	cfg := ClientConfig(im)
	addr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 22}
	if cfg.User != "antidote" {
		t.Errorf("User = %q", cfg.User)
	}
	if err := cfg.HostKeyCallback("h", addr, known); err != nil {
		t.Errorf("manifest key rejected: %v", err)
	}
	if err := cfg.HostKeyCallback("h", addr, other); err == nil {
		t.Error("a key not in the manifest was accepted")
	}
}

func TestSteps(t *testing.T) {
	v := &VM{}
	v.Write([]byte("[    0.1] kernel line\r\nendpointkit: [1.234] init started\r\nendpointkit: [1.500] module virtio.ko\n" +
		"endpointkit: [2.000] ready\nendpointkit: ready hostname=x addr=10.0.2.15/24\nendpointkit: [9.000] ready\n"))
	got := v.Steps()
	want := map[string]float64{"init started": 1.234, "module virtio.ko": 1.5, "ready": 2}
	if len(got) != len(want) {
		t.Errorf("Steps = %v; want %v", got, want)
	}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("Steps[%q] = %v; want %v", k, got[k], w)
		}
	}
}
