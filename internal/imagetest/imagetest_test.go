package imagetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
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
		"-drive file=/img/disk.qcow2,format=qcow2,snapshot=on,if=none,id=d27 -device virtio-blk-pci,drive=d27,addr=0x1b",
		"-drive file=/img/seed.iso,format=raw,readonly=on,if=none,id=d28 -device virtio-blk-pci,drive=d28,addr=0x1c",
		"-drive file=/x.iso,format=raw,readonly=on,if=none,id=d29 -device virtio-blk-pci,drive=d29,addr=0x1d",
		"-netdev user,id=n0,hostfwd=tcp:127.0.0.1:2222-:22 -device e1000,netdev=n0,addr=0x2",
		"-netdev user,id=n2,restrict=on,net=10.12.0.0/24 -device e1000,netdev=n2,addr=0x4",
		"-fsdev local,path=/lesson,security_model=none,id=share0 -device virtio-9p-pci,fsdev=share0,mount_tag=antidote,addr=0x1e",
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

func TestWriteMBRDisk(t *testing.T) {
	dir := t.TempDir()
	boot := bytes.Repeat([]byte{0xb0}, 512)
	core := bytes.Repeat([]byte{0xc0}, 3*512+17)
	fsData := make([]byte, 5<<20+100) // a 4 MiB hole in the middle
	copy(fsData, "superblock")
	copy(fsData[5<<20:], "tail")
	fsPath := filepath.Join(dir, "fs.img")
	if err := os.WriteFile(fsPath, fsData, 0o644); err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, "disk.raw")
	if err := writeMBRDisk(dst, boot, core, fsPath); err != nil {
		t.Fatal(err)
	}
	disk, err := os.ReadFile(dst)
	if err != nil {
		t.Fatal(err)
	}
	fsSectors := (len(fsData) + 511) / 512
	if len(disk) != (2048+fsSectors)*512 {
		t.Fatalf("disk has %d bytes; want %d", len(disk), (2048+fsSectors)*512)
	}
	if !bytes.Equal(disk[:440], boot[:440]) || !bytes.Equal(disk[440:446], make([]byte, 6)) {
		t.Error("MBR boot code is not boot.img's first 440 bytes followed by a zero signature")
	}
	entry := disk[446:462]
	if entry[0] != 0x80 || entry[4] != 0x83 || binary.LittleEndian.Uint32(entry[8:]) != 2048 || binary.LittleEndian.Uint32(entry[12:]) != uint32(fsSectors) {
		t.Errorf("partition entry = % x", entry)
	}
	if !bytes.Equal(disk[462:510], make([]byte, 48)) || disk[510] != 0x55 || disk[511] != 0xaa {
		t.Error("other partition entries not empty, or no boot signature")
	}
	if !bytes.Equal(disk[512:512+len(core)], core) || !bytes.Equal(disk[512+len(core):1<<20], make([]byte, (1<<20)-512-len(core))) {
		t.Error("core.img is not at sector 1, or the gap is not zero after it")
	}
	if !bytes.Equal(disk[1<<20:], append(fsData, make([]byte, fsSectors*512-len(fsData))...)) {
		t.Error("the partition does not hold the file system image")
	}
	var st syscall.Stat_t
	if err := syscall.Stat(dst, &st); err != nil || st.Blocks*512 >= int64(len(disk)) {
		t.Errorf("disk uses %d bytes of %d: zero blocks were written, not left as holes (%v)", st.Blocks*512, len(disk), err)
	}

	for _, tc := range []struct {
		name       string
		boot, core []byte
		want       string
	}{
		{"short boot.img", boot[:100], core, "boot.img has 100 bytes"},
		{"huge core.img", boot, make([]byte, 1<<20), "must fit the 2047 sectors"},
		{"no core.img", boot, nil, "must fit"},
	} {
		if err := writeMBRDisk(filepath.Join(dir, "bad.raw"), tc.boot, tc.core, fsPath); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: err = %v; want %q", tc.name, err, tc.want)
		}
	}
	if err := writeMBRDisk(filepath.Join(dir, "bad.raw"), boot, core, filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file system image: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "bad.raw")); !os.IsNotExist(err) {
		t.Errorf("a failed write left %s: %v", filepath.Join(dir, "bad.raw"), err)
	}
}
