package imagetest

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

func fileSHA256(tb testing.TB, path string) string {
	tb.Helper()
	sum, err := vmimage.FileSHA256(path)
	if err != nil {
		tb.Fatal(err)
	}
	return sum
}

// CloudInitRecipe is a disk recipe for the cloud-init vendor-disk
// stand-in; source is the disk: line (path: or url:). The client key is
// derived from a constant, so the recipe, and with it the cached image,
// stays the same from run to run. extra is appended to the recipe.
func CloudInitRecipe(t testing.TB, source, sum, extra string) (string, ssh.Signer) {
	t.Helper()
	seed := sha256.Sum256([]byte("endpointkit cloud-init test client key"))
	signer, err := ssh.NewSignerFromKey(ed25519.NewKeyFromSeed(seed[:]))
	if err != nil {
		t.Fatal(err)
	}
	authorized := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(signer.PublicKey())))
	dir := t.TempDir()
	recipe := `slug: vendor-ci
description: the cloud-init vendor-disk stand-in, customised by a seed
kind: disk
disk:
  ` + source + `
  sha256: ` + sum + `
  format: qcow2
  cloudInit: true
users:
  - name: antidote
    password: antidotepassword
    groups: [sudo, netops]
    authorizedKeys: ['` + authorized + `']
steps:
  - echo "ran as $(id -un) on $(hostname)" > /var/lib/endpointkit-firstboot
qemu:
  memoryMiB: 1024
` + extra
	if err := os.WriteFile(filepath.Join(dir, imagebuild.RecipeFile), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, signer
}

// Baked returns the baked cloud-init vendor-disk image (CloudInitRecipe
// of CloudInitDisk: its first boot saved into the disk at build time), an
// image that takes a per-instance identity (vmimage.IdentityFWCfg) and
// lists no host keys; imagebuild's tests build the same, so it is cached
// once for both.
func Baked(tb testing.TB) *vmimage.Image {
	tb.Helper()
	vendor, sum := CloudInitDisk(tb)
	dir, _ := CloudInitRecipe(tb, "path: "+vendor, sum, "")
	return Build(tb, dir)
}

// CloudInitDisk returns a stand-in for a vendor disk that runs cloud-init,
// and its sha256: the debootstrap recipe testdata/cloudinit-base (Debian
// with cloud-init reading only the NoCloud seed, linux-image-cloud-amd64,
// initramfs-tools and GRUB) put into an MBR-partitioned disk with GRUB in
// its boot sectors, as grub-install would leave it. It boots from its own
// bootloader as vendor disks do, so a `disk` image made from it takes the
// disk kind's real boot path. Its only account is "vendor" /
// "vendorpassword" and its hostname "cloudinit-base": anything else comes
// from a seed.
//
// The disk is a compressed qcow2 in the test cache, made once per build of
// the base image (about two minutes cold; needs root).
func CloudInitDisk(tb testing.TB) (path, sum string) {
	tb.Helper()
	ektest.RequireTool(tb, "debugfs", "qemu-img")
	base := Build(tb, filepath.Join(ektest.RepoRoot(tb), "internal", "imagetest", "testdata", "cloudinit-base"))
	dir := filepath.Join(ektest.CacheDir(tb), "imagebuild", "vendor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	path = filepath.Join(dir, "cloudinit-base-"+base.Manifest.BuildKey[:16]+".qcow2")
	if _, err := os.Stat(path); err != nil {
		work, err := os.MkdirTemp(dir, ".work-")
		if err != nil {
			tb.Fatal(err)
		}
		defer os.RemoveAll(work)
		start := time.Now()
		if err := assembleCloudInitDisk(base.Path(base.Manifest.Disk), work, path); err != nil {
			tb.Fatalf("imagetest: vendor disk from %s: %v", base.Dir, err)
		}
		tb.Logf("imagetest: vendor disk %s assembled in %s", path, time.Since(start).Round(100*time.Millisecond))
	}
	return path, fileSHA256(tb, path)
}

// assembleCloudInitDisk turns the base image's root file system (a whole
// disk ext4) into a bootable partitioned qcow2 at dst, working in work.
func assembleCloudInitDisk(rootDisk, work, dst string) error {
	run := func(name string, args ...string) error {
		if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: %v: %s", name, err, out)
		}
		return nil
	}
	root := filepath.Join(work, "root.ext4")
	if err := run("qemu-img", "convert", "-O", "raw", rootDisk, root); err != nil {
		return err
	}
	// The recipe left GRUB's boot sectors in /boot/grub/i386-pc; debugfs
	// reads them out of the file system without mounting it.
	var sectors [2][]byte
	for i, name := range []string{"boot.img", "core.img"} {
		out := filepath.Join(work, name)
		if err := run("debugfs", "-R", "dump /boot/grub/i386-pc/"+name+" "+out, root); err != nil {
			return err
		}
		var err error
		if sectors[i], err = os.ReadFile(out); err != nil {
			return fmt.Errorf("debugfs found no /boot/grub/i386-pc/%s in the image: %w", name, err)
		}
	}
	raw := filepath.Join(work, "disk.raw")
	if err := writeMBRDisk(raw, sectors[0], sectors[1], root); err != nil {
		return err
	}
	tmp := filepath.Join(work, "disk.qcow2")
	if err := run("qemu-img", "convert", "-c", "-f", "raw", "-O", "qcow2", raw, tmp); err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}

// Layout of a disk written by writeMBRDisk.
const (
	sectorSize     = 512
	partitionStart = 2048 // sectors: the partition starts at 1 MiB
)

// writeMBRDisk writes a raw BIOS-bootable disk to dst: an MBR with the
// boot code of GRUB's boot.img and one active Linux partition from 1 MiB
// holding the file system image fsImage, and GRUB's core.img in the gap
// from sector 1, where boot.img loads it from — what grub-install does,
// without a loop device or a mounted file system. Zero blocks of fsImage
// are left as holes.
func writeMBRDisk(dst string, bootImg, coreImg []byte, fsImage string) (err error) {
	if len(bootImg) != sectorSize {
		return fmt.Errorf("boot.img has %d bytes, want %d", len(bootImg), sectorSize)
	}
	if len(coreImg) == 0 || len(coreImg) > (partitionStart-1)*sectorSize {
		return fmt.Errorf("core.img has %d bytes; it must fit the %d sectors before the partition", len(coreImg), partitionStart-1)
	}
	src, err := os.Open(fsImage)
	if err != nil {
		return err
	}
	defer src.Close()
	st, err := src.Stat()
	if err != nil {
		return err
	}
	fsSectors := (st.Size() + sectorSize - 1) / sectorSize
	if fsSectors > 1<<32-1-partitionStart {
		return fmt.Errorf("%s is too big for an MBR partition", fsImage)
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	defer func() {
		err = errors.Join(err, f.Close())
		if err != nil {
			os.Remove(dst)
		}
	}()
	if err := f.Truncate((partitionStart + fsSectors) * sectorSize); err != nil {
		return err
	}
	mbr := make([]byte, sectorSize)
	copy(mbr, bootImg[:440]) // boot code; the disk signature and table follow
	entry := mbr[446:462]
	entry[0] = 0x80 // active
	copy(entry[1:4], []byte{0xfe, 0xff, 0xff})
	entry[4] = 0x83 // Linux
	copy(entry[5:8], []byte{0xfe, 0xff, 0xff})
	binary.LittleEndian.PutUint32(entry[8:], partitionStart)
	binary.LittleEndian.PutUint32(entry[12:], uint32(fsSectors))
	mbr[510], mbr[511] = 0x55, 0xaa
	if _, err := f.WriteAt(mbr, 0); err != nil {
		return err
	}
	if _, err := f.WriteAt(coreImg, sectorSize); err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(partitionStart * sectorSize); ; {
		n, rerr := io.ReadFull(src, buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, err := f.WriteAt(buf[:n], off); err != nil {
				return err
			}
		}
		off += int64(n)
		if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}
