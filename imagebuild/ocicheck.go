package imagebuild

import (
	"archive/tar"
	"bufio"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"golang.org/x/sys/unix"
)

// ErrBootCheck: the image did not boot with the runtime layer's QEMU.
var ErrBootCheck = errors.New("boot check failed")

// checkStatic refuses a launcher binary that needs a dynamic linker: the
// container has the runtime layer's glibc, but the launcher must not
// depend on it (CGO_ENABLED=0).
func checkStatic(bin string) error {
	f, err := elf.Open(bin)
	if err != nil {
		return fmt.Errorf("imagebuild: endpoint binary %s: %w", bin, err)
	}
	defer f.Close()
	if f.Machine != elf.EM_X86_64 {
		return fmt.Errorf("imagebuild: endpoint binary %s is for %v, not x86-64: build it with GOARCH=amd64", bin, f.Machine)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			return fmt.Errorf("imagebuild: endpoint binary %s is dynamically linked: build it with CGO_ENABLED=0", bin)
		}
	}
	return nil
}

// validateImage reads every blob of img and checks its size and sha256.
func validateImage(img v1.Image) error {
	m, err := img.Manifest()
	if err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	if _, err := img.ConfigFile(); err != nil {
		return fmt.Errorf("config %s: %w", m.Config.Digest, err)
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	if len(layers) != len(m.Layers) {
		return fmt.Errorf("manifest lists %d layers, %d readable", len(m.Layers), len(layers))
	}
	for i, l := range layers {
		want := m.Layers[i]
		rc, err := l.Compressed()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want.Digest, err)
		}
		h := sha256.New()
		n, err := io.Copy(h, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("layer %s: %w", want.Digest, err)
		}
		if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != want.Digest.String() || n != want.Size {
			return fmt.Errorf("layer blob %s is corrupt: %d bytes with sha256 %s", want.Digest, n, got)
		}
	}
	return nil
}

// bootCheck boots im under TCG with the QEMU of the runtime layer rt,
// chrooted into the extracted runtime and image layers, until the
// manifest's readiness marker (or, for an image without one, until QEMU
// has run it for unmarkedSettle without dying or missing a ROM). It needs root (chroot, device nodes); without root
// it logs that it skipped. A success is remembered per pair of layers.
func (b *Builder) bootCheck(ctx context.Context, im *vmimage.Image, rt, vm *fileLayer) error {
	if b.euid() != 0 {
		b.log.Warn("boot check skipped: chrooting the runtime layer needs root", "image", im.Manifest.Slug)
		return nil
	}
	sum := sha256.Sum256([]byte(rt.info.DiffID + vm.info.DiffID))
	memo := filepath.Join(b.opts.CacheDir, "oci", "bootchecked", hex.EncodeToString(sum[:12]))
	if _, err := os.Stat(memo); err == nil {
		return nil
	}
	b.progress.Step("boot check: " + im.Manifest.Slug + " with the runtime layer's QEMU")
	root, err := os.MkdirTemp(b.opts.CacheDir, ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	for _, l := range []*fileLayer{rt, vm} {
		if err := extractLayer(l, root); err != nil {
			return fmt.Errorf("imagebuild: boot check: %w", err)
		}
	}
	if err := makeDevices(root); err != nil {
		return fmt.Errorf("imagebuild: boot check: %w", err)
	}
	start := time.Now()
	if err := bootInRoot(ctx, root, im.Manifest); err != nil {
		return fmt.Errorf("imagebuild: %s: %w: %v (the runtime layer is %s; it lacks something QEMU needs, or the image does not boot)",
			im.Manifest.Slug, ErrBootCheck, err, rt.info.Digest)
	}
	b.log.Info("boot check passed", "image", im.Manifest.Slug, "took", time.Since(start).Round(time.Millisecond))
	os.MkdirAll(filepath.Dir(memo), 0o755)
	return os.WriteFile(memo, []byte(time.Now().UTC().Format(time.RFC3339)+"\n"), 0o644)
}

// makeDevices creates the device nodes QEMU opens.
func makeDevices(root string) error {
	dev := filepath.Join(root, "dev")
	if err := os.MkdirAll(dev, 0o755); err != nil {
		return err
	}
	for name, minor := range map[string]uint32{"null": 3, "zero": 5, "random": 8, "urandom": 9} {
		if err := unix.Mknod(filepath.Join(dev, name), unix.S_IFCHR|0o666, int(unix.Mkdev(1, minor))); err != nil {
			return fmt.Errorf("mknod /dev/%s: %w", name, err)
		}
	}
	return nil
}

// bootInRoot runs the launcher's QEMU command line for m inside root.
func bootInRoot(ctx context.Context, root string, m vmimage.Manifest) error {
	lesson := "/lesson"
	for _, d := range []string{lesson, "/run/bootcheck"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	args, overlay, err := bootArgs(m, lesson, "/run/bootcheck")
	if err != nil {
		return err
	}
	// Its own process group (killed as one), and killed with the builder.
	chroot := &syscall.SysProcAttr{Chroot: root, Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if overlay != "" {
		format := m.DiskFormat
		if format == "" {
			format = "qcow2"
		}
		cmd := exec.CommandContext(ctx, "/usr/bin/qemu-img", "create", "-q", "-f", "qcow2", "-b", path.Join(ContainerImageDir, m.Disk), "-F", format, overlay)
		cmd.SysProcAttr, cmd.Dir = chroot, "/"
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("qemu-img create (from the runtime layer): %v: %s", err, lastLines(out, 3))
		}
	}
	timeout := 4 * max(60*time.Second, 10*time.Duration(m.Readiness.BootSeconds)*time.Second)
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "/usr/bin/qemu-system-x86_64", args...)
	cmd.SysProcAttr, cmd.Dir = chroot, "/"
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	var stderr lockedTail
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start QEMU from the runtime layer: %w", err)
	}
	defer func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL); cmd.Wait() }()
	found := make(chan string, 1)
	var console lockedTail
	go func() {
		var re *regexp.Regexp
		if m.Readiness.SerialRegex != "" {
			re, _ = regexp.Compile(m.Readiness.SerialRegex)
		}
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			console.Write(append(sc.Bytes(), '\n'))
			if re != nil && re.Match(sc.Bytes()) {
				found <- sc.Text()
				break
			}
		}
		io.Copy(io.Discard, out)
		close(found)
	}()
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	started := time.Now()
	for {
		select {
		case _, ok := <-found:
			if ok {
				return nil
			}
			err := cmd.Wait()
			return fmt.Errorf("QEMU exited (%v) before the readiness marker %q: %s; console: %s", err, m.Readiness.SerialRegex, stderr.tail(), console.tail())
		case <-tick.C:
			// QEMU only warns about a missing option ROM and runs on
			// with a guest that never boots.
			if msg := stderr.tail(); romMissing.MatchString(msg) {
				return fmt.Errorf("%s", msg)
			}
			// Without a readiness marker (a vendor disk may need minutes
			// and its data NICs before anything answers), the runtime is
			// proven when QEMU has run the image's machine, firmware and
			// devices for a while without dying or missing a ROM.
			if m.Readiness.SerialRegex == "" && time.Since(started) > unmarkedSettle {
				return nil
			}
		case <-ctx.Done():
			return fmt.Errorf("not ready within %v: %s; console: %s", timeout, stderr.tail(), console.tail())
		}
	}
}

// romMissing matches QEMU's complaints about firmware it cannot find.
var romMissing = regexp.MustCompile(`(?i)could not open option rom|failed to find romfile|could not load|firmware .* not found`)

// bootArgs is the QEMU command line of the boot check: the machine, CPU,
// memory, kernel, NIC model, disk bus, seed and 9p share the launcher
// (qemulaunch) gives the image — so the same firmware and option ROMs load
// — with the management NIC on user networking and no data NICs (their
// model, and so their ROM, is the management NIC's). qemulaunch cannot be
// imported here: its tests build images with this package.
func bootArgs(m vmimage.Manifest, lesson, state string) (args []string, overlay string, err error) {
	q := m.QEMU
	or := func(v, def string) string {
		if v == "" {
			return def
		}
		return v
	}
	mem := q.MemoryMiB
	if mem <= 0 {
		mem = 512 // the launcher's default
	}
	args = []string{"-name", "bootcheck", "-machine", or(q.Machine, "pc") + ",accel=tcg",
		"-m", fmt.Sprint(mem), "-smp", fmt.Sprint(max(q.CPUs, 1)),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-chardev", "stdio,id=console0,signal=off", "-serial", "chardev:console0"}
	if q.CPU != "" {
		args = append(args, "-cpu", q.CPU)
	}
	if m.Kernel != "" {
		args = append(args, "-kernel", path.Join(ContainerImageDir, m.Kernel))
		if m.Initrd != "" {
			args = append(args, "-initrd", path.Join(ContainerImageDir, m.Initrd))
		}
		args = append(args, "-append", strings.TrimSpace(m.Cmdline+" endpointkit.hostname=bootcheck"))
	}
	args = append(args, "-netdev", "user,id=net0", "-device", or(q.NICModel, "virtio-net-pci")+",netdev=net0")
	if m.Disk != "" {
		overlay = path.Join(state, "overlay.qcow2")
		args = append(args, "-drive", "file="+overlay+",format=qcow2,if=none,id=disk0")
		switch q.DiskBus {
		case "", "virtio":
			args = append(args, "-device", "virtio-blk-pci,drive=disk0")
		case "ide":
			args = append(args, "-device", "ide-hd,drive=disk0")
		case "scsi":
			args = append(args, "-device", "virtio-scsi-pci,id=scsi0", "-device", "scsi-hd,drive=disk0,bus=scsi0.0")
		default:
			return nil, "", fmt.Errorf("disk bus %q: want virtio, ide or scsi", q.DiskBus)
		}
	}
	if m.Seed != "" {
		args = append(args, "-drive", "file="+path.Join(ContainerImageDir, m.Seed)+",format=raw,if=none,id=seed0,readonly=on",
			"-device", "virtio-blk-pci,drive=seed0")
	}
	args = append(args, "-fsdev", "local,id=fsdev0,path="+lesson+",security_model=none,readonly=on",
		"-device", "virtio-9p-pci,fsdev=fsdev0,mount_tag=antidote")
	return append(args, q.ExtraArgs...), overlay, nil
}

// unmarkedSettle is how long QEMU must run an image without a readiness
// marker for the boot check to pass.
const unmarkedSettle = 10 * time.Second

// lockedTail keeps the last 2 KiB written to it.
type lockedTail struct {
	mu  sync.Mutex
	buf []byte
	n   int
}

func (t *lockedTail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n += len(p)
	t.buf = append(t.buf, p...)
	if len(t.buf) > 2048 {
		t.buf = t.buf[len(t.buf)-2048:]
	}
	return len(p), nil
}

func (t *lockedTail) tail() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return strings.TrimSpace(string(t.buf))
}

// extractLayer unpacks a layer blob (directories, files, symlinks) into
// root; names escaping root are refused.
func extractLayer(l *fileLayer, root string) error {
	rc, err := l.Uncompressed()
	if err != nil {
		return err
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("layer %s: %w", l.info.Digest, err)
		}
		name := filepath.Clean("/" + hdr.Name)
		dst := filepath.Join(root, name)
		switch hdr.Typeflag {
		case tar.TypeDir:
			if err := os.MkdirAll(dst, os.FileMode(hdr.Mode).Perm()); err != nil {
				return err
			}
		case tar.TypeSymlink:
			if err := os.Symlink(hdr.Linkname, dst); err != nil {
				return err
			}
		case tar.TypeReg:
			f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_EXCL, os.FileMode(hdr.Mode).Perm())
			if err != nil {
				return err
			}
			_, err = io.Copy(f, tr)
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			return fmt.Errorf("layer %s: %s: unexpected entry type %c", l.info.Digest, hdr.Name, hdr.Typeflag)
		}
	}
}
