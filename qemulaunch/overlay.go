package qemulaunch

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// CheckImage verifies that the files the manifest names exist and look
// right: the kernel is an ELF (PVH) or a bzImage, small files match their
// recorded sha256, and the base disk is readable by qemu-img. Errors wrap
// [ErrImage] and name the file.
func CheckImage(ctx context.Context, im *vmimage.Image) error {
	if err := checkImage(ctx, im, false); err != nil {
		return err
	}
	return checkImage(ctx, im, true)
}

// checkImage does the cheap checks (existence, headers, qemu-img) or, with
// hashes, only the sha256 comparison, which Start runs beside the boot.
func checkImage(ctx context.Context, im *vmimage.Image, hashes bool) error {
	m := im.Manifest
	check := func(field, rel string, hashLimit int64) error {
		if rel == "" {
			return nil
		}
		p := im.Path(rel)
		st, err := os.Stat(p)
		if err != nil {
			return fmt.Errorf("%w: %s: %s (manifest field %s): rebuild the image", ErrImage, imageManifest(im), err, field)
		}
		if st.Size() == 0 {
			return fmt.Errorf("%w: %s is empty (manifest field %s): rebuild the image", ErrImage, p, field)
		}
		want, ok := m.Artifacts[rel]
		if !hashes || !ok || st.Size() > hashLimit {
			return nil
		}
		got, err := vmimage.FileSHA256(p)
		if err != nil {
			return fmt.Errorf("%w: %s: %v", ErrImage, p, err)
		}
		if got != want {
			return fmt.Errorf("%w: %s is corrupt: sha256 %s, manifest says %s: rebuild the image", ErrImage, p, got[:12], want[:min(12, len(want))])
		}
		return nil
	}
	const smallFile = 256 << 20
	for _, f := range []struct{ field, rel string }{{"kernel", m.Kernel}, {"initrd", m.Initrd}, {"seed", m.Seed}} {
		if err := check(f.field, f.rel, smallFile); err != nil {
			return err
		}
	}
	if hashes {
		return nil
	}
	if m.Kernel != "" {
		if err := checkKernel(im.Path(m.Kernel), m.KernelFormat); err != nil {
			return err
		}
	}
	if err := check("disk", m.Disk, 0); err != nil {
		return err
	}
	if m.Disk != "" {
		format := m.DiskFormat
		if format == "" {
			format = "qcow2"
		}
		out, err := exec.CommandContext(ctx, "qemu-img", "info", "-f", format, "--output=json", im.Path(m.Disk)).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%w: %s: qemu-img cannot read it as %s: %s: rebuild the image", ErrImage, im.Path(m.Disk), format, lastLine(string(out)))
		}
	}
	return nil
}

func checkKernel(p string, format vmimage.KernelFormat) error {
	f, err := os.Open(p)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrImage, err)
	}
	defer f.Close()
	head := make([]byte, 0x210)
	n, _ := io.ReadFull(f, head)
	head = head[:n]
	isELF := bytes.HasPrefix(head, []byte("\x7fELF"))
	isBz := len(head) >= 0x206 && string(head[0x202:0x206]) == "HdrS"
	switch {
	case format == vmimage.KernelPVH && !isELF:
		return fmt.Errorf("%w: %s: manifest says %s but the file is not an ELF vmlinux: rebuild the image", ErrImage, p, format)
	case format == vmimage.KernelBzImage && !isBz:
		return fmt.Errorf("%w: %s: manifest says %s but the file has no Linux boot header: rebuild the image", ErrImage, p, format)
	case !isELF && !isBz:
		return fmt.Errorf("%w: %s is neither an ELF vmlinux nor a bzImage: rebuild the image", ErrImage, p)
	}
	return nil
}

// createOverlay makes path a qcow2 overlay backed by base (read-only to
// QEMU through the overlay: the base is never written). With reuse, an
// overlay already at path is kept (a restarted guest keeps its disk).
func createOverlay(ctx context.Context, base, baseFormat, path string, reuse bool) error {
	if _, err := os.Stat(path); reuse && err == nil {
		return nil
	}
	os.Remove(path)
	out, err := exec.CommandContext(ctx, "qemu-img", "create", "-q", "-f", "qcow2",
		"-b", base, "-F", baseFormat, path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("create overlay %s over %s: %v: %s", path, base, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// CheckOverlay runs `qemu-img check` on a qcow2 file and returns its
// complaint when it is not clean.
func CheckOverlay(ctx context.Context, path string) error {
	out, err := exec.CommandContext(ctx, "qemu-img", "check", "-q", path).CombinedOutput()
	if err != nil {
		return fmt.Errorf("qemu-img check %s: %v: %s", path, err, strings.TrimSpace(string(out)))
	}
	return nil
}
