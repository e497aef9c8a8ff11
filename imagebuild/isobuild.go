package imagebuild

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
)

// isoFormat names what the iso builder does; part of an iso image's cache
// key.
const isoFormat = "iso/1: direct installer boot, answers over HTTP, provisioning late command, bake"

// userNetHost is the address a QEMU user-network guest reaches the host
// (127.0.0.1) at.
const userNetHost = "10.0.2.2"

// installerDebianLayouts are where Debian ISOs keep the installer's kernel
// and initrd.
var installerDebianLayouts = [][2]string{
	{"/install.amd/vmlinuz", "/install.amd/initrd.gz"},
	{"/install/vmlinuz", "/install/initrd.gz"},
	{"/linux", "/initrd.gz"},
}

// questionQuiet is how long an installer may sit at a question before the
// build fails naming it.
const questionQuiet = 30 * time.Second

// buildISO installs from the recipe's ISO into a new qcow2 and bakes its
// first boot: the ISO (verified, kept in the raw-image store) gives the
// installer's kernel and initrd, booted directly with the answer file's
// URL on the command line; a built-in HTTP server on the user network's
// host address serves the answers and the provisioning script; the
// installer provisions the target from its late command and powers off;
// the disk then boots once from its own bootloader (the bake boot) and is
// compacted.
func (b *Builder) buildISO(ctx context.Context, r *Recipe, dir string) (*vmimage.Manifest, error) {
	for _, tool := range []string{"qemu-img", "xorriso", "qemu-system-x86_64"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("imagebuild: kind iso needs %s: %w (run `make deps`)", tool, ErrMissingTool)
		}
	}
	work, err := os.MkdirTemp(b.opts.CacheDir, ".work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	iso := filepath.Join(work, "installer.iso")
	if err := b.fromStore(ctx, r, "iso", &DiskSource{Path: r.ISO.Path, URL: r.ISO.URL, SHA256: r.ISO.SHA256}, iso); err != nil {
		return nil, err
	}
	kernel, initrd, err := extractInstaller(ctx, r, iso, work)
	if err != nil {
		return nil, err
	}
	answers, err := os.ReadFile(r.ISO.Answers.File)
	if err != nil {
		return nil, r.errAt("iso.answers.file", "%v", err)
	}
	lines, err := ParsePreseed(r.ISO.Answers.File, answers)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	script, err := ProvisionScript(r)
	if err != nil {
		return nil, err
	}
	disk := filepath.Join(dir, DiskFile)
	if out, err := exec.CommandContext(ctx, "qemu-img", "create", "-f", "qcow2", disk, fmt.Sprintf("%dM", r.ISO.DiskSizeMiB)).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imagebuild: qemu-img create: %v: %s", err, lastLines(out, 3))
	}
	srv, err := serveAnswers(b.log)
	if err != nil {
		return nil, err
	}
	defer srv.close()
	srv.add("/preseed.cfg", endpointkitPreseed(answers, lines, srv.url("/endpointkit/provision.sh")))
	srv.add("/endpointkit/provision.sh", []byte(script))

	cmdline := "auto=true priority=critical url=" + srv.url("/preseed.cfg") + " DEBIAN_FRONTEND=text " + r.ISO.Cmdline +
		" --- console=ttyS0,115200n8 net.ifnames=0"
	args := append(buildVMArgs(1024),
		"-kernel", kernel, "-initrd", initrd, "-append", cmdline,
		"-drive", "file="+disk+",format=qcow2,if=virtio,cache=unsafe,discard=unmap",
		"-drive", "file="+iso+",format=raw,media=cdrom,readonly=on,if=ide",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	b.progress.Step(fmt.Sprintf("install from %s (answers %s)", filepath.Base(cmp.Or(r.ISO.Path, r.ISO.URL)), filepath.Base(r.ISO.Answers.File)))
	start := time.Now()
	if err := b.runInstaller(ctx, args, time.Duration(r.ISO.TimeoutMinutes)*time.Minute); err != nil {
		return nil, fmt.Errorf("imagebuild: %s: %w", r.Path, err)
	}
	if !srv.fetched("/preseed.cfg") {
		return nil, fmt.Errorf("imagebuild: %s: the installer finished without fetching the answer file from %s: does it take url= on its command line (preseed)?", r.Path, srv.url("/preseed.cfg"))
	}
	b.log.Info("installed", "slug", r.Slug, "elapsed", time.Since(start).Round(time.Second))
	if err := b.bakeInstalled(ctx, disk); err != nil {
		return nil, fmt.Errorf("imagebuild: %s: %w", r.Path, err)
	}
	m := baseManifest(r)
	m.Disk, m.DiskFormat, m.Identity = DiskFile, "qcow2", vmimage.IdentityFWCfg
	if m.QEMU.MemoryMiB == 0 {
		m.QEMU.MemoryMiB = 1024
	}
	return m, nil
}

// runInstaller runs the installer until it powers off, failing when it
// sits at a question the answers did not answer (naming it) or runs past
// the deadline.
func (b *Builder) runInstaller(ctx context.Context, args []string, deadline time.Duration) error {
	lines := b.progress.Lines("installer").(*lineWriter)
	defer lines.Close()
	vm, err := startBuildVM(args, lines)
	if err != nil {
		return err
	}
	defer vm.kill()
	return vm.wait(ctx, vmWatch{what: "install", deadline: deadline, stuck: debianQuestion, quiet: questionQuiet})
}

// bakeInstalled boots an installed disk once from its own bootloader with
// the bake service on, waits for its marker and power-off, and compacts
// the disk.
func (b *Builder) bakeInstalled(ctx context.Context, disk string) error {
	flag := disk + ".bake"
	if err := os.WriteFile(flag, []byte("1\n"), 0o600); err != nil {
		return err
	}
	defer os.Remove(flag)
	args := append(buildVMArgs(1024),
		"-drive", "file="+disk+",format=qcow2,if=virtio,cache=unsafe,discard=unmap",
		"-fw_cfg", "name="+bakeFWCfgName+",file="+flag,
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	b.progress.Step("bake: first boot of the installed system")
	if err := b.bakeBoot(ctx, args); err != nil {
		return err
	}
	return compactQcow2(ctx, disk)
}

// extractInstaller copies the installer's kernel and initrd out of the
// ISO (xorriso): the recipe's paths, else the first Debian layout found.
func extractInstaller(ctx context.Context, r *Recipe, iso, work string) (kernel, initrd string, err error) {
	layouts := installerDebianLayouts
	if r.ISO.Kernel != "" {
		layouts = [][2]string{{r.ISO.Kernel, r.ISO.Initrd}}
	}
	kernel, initrd = filepath.Join(work, "installer-kernel"), filepath.Join(work, "installer-initrd")
	var last []byte
	for _, l := range layouts {
		out, err := exec.CommandContext(ctx, "xorriso", "-osirrox", "on", "-indev", iso,
			"-extract", l[0], kernel, "-extract", l[1], initrd).CombinedOutput()
		if err == nil {
			return kernel, initrd, nil
		}
		last = out
	}
	if r.ISO.Kernel != "" {
		return "", "", r.errAt("iso.kernel", "%s or %s is not in the ISO: %s", r.ISO.Kernel, r.ISO.Initrd, lastLines(last, 2))
	}
	return "", "", r.errAt("iso", "no installer kernel and initrd at the Debian places (%v) in the ISO: name them with iso.kernel and iso.initrd", installerDebianLayouts)
}

// answerServer is the HTTP server the installer fetches its answers and
// the provisioning script from, on 127.0.0.1 (the guest's 10.0.2.2).
type answerServer struct {
	ln    net.Listener
	srv   *http.Server
	mu    sync.Mutex
	files map[string][]byte
	got   map[string]bool
}

func serveAnswers(log *slog.Logger) (*answerServer, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: answer server: %w", err)
	}
	s := &answerServer{ln: ln, files: map[string][]byte{}, got: map[string]bool{}}
	s.srv = &http.Server{ReadHeaderTimeout: 30 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		s.mu.Lock()
		data, ok := s.files[req.URL.Path]
		if ok {
			s.got[req.URL.Path] = true
		}
		s.mu.Unlock()
		log.Info("answer server", "path", req.URL.Path, "found", ok)
		if !ok {
			http.NotFound(w, req)
			return
		}
		w.Write(data)
	})}
	go s.srv.Serve(ln)
	return s, nil
}

func (s *answerServer) add(path string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
}

func (s *answerServer) fetched(path string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.got[path]
}

// url is path's URL as the guest sees it.
func (s *answerServer) url(path string) string {
	return fmt.Sprintf("http://%s:%d%s", userNetHost, s.ln.Addr().(*net.TCPAddr).Port, path)
}

func (s *answerServer) close() { s.srv.Close() }
