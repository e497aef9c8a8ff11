package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/sys/unix"
)

// builderVersion is part of every cache key: bump it when a builder
// changes what it produces in a way builderFingerprint does not see.
const builderVersion = "imagebuild/2"

// builderFingerprint hashes builderVersion and the text the builders put
// into images (units, configs, package and module lists), so changing any
// of them invalidates cached images.
func builderFingerprint() string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode([]any{builderVersion, initramfsCmdline, debianCmdline, DebianBootTrim(), profile, bootModules(), shareModules(),
		basePackages(), stage1Modules(), rootModuleDirs(), sshdConfig, sudoersFile, dataNICRule, readyUnit, shareUnit,
		interfacesFile(true, "eth0")})
	return hex.EncodeToString(h.Sum(nil))
}

// Sentinel errors; match with errors.Is.
var (
	// ErrChecksum: a file's sha256 differs from the one expected.
	ErrChecksum = errors.New("sha256 mismatch")
	// ErrNeedRoot: the builder needs root (debootstrap, mkfs owners).
	ErrNeedRoot = errors.New("needs root")
	// ErrMissingTool: a program the builder runs is not installed.
	ErrMissingTool = errors.New("missing tool")
)

// Options configure a [Builder]. The zero value is usable.
type Options struct {
	// CacheDir holds downloads, extracted kernels, built agents and built
	// images (content-addressed). Default: $XDG_CACHE_HOME/endpointkit
	// (os.UserCacheDir), or /var/cache/endpointkit for root.
	CacheDir string
	// NoCache rebuilds even when an image with the same key exists (the
	// downloaded packages are still reused).
	NoCache bool
	// AgentBinary is a pre-built guest agent (static, linux/amd64) for
	// initramfs images. Default: the recipe's agent, else `go build` of
	// imagebuild/agent/cmd/ekagent in GoDir.
	AgentBinary string
	// GoDir is where `go build` of the agent runs: a directory inside the
	// endpointkit module or a module requiring it. Default: the current
	// directory, else the endpointkit module directory from `go list -m`.
	GoDir string
	// Busybox is the static busybox of initramfs images (default
	// /bin/busybox from busybox-static).
	Busybox string
	// StoreURL is the raw-image store of vendor disks (gocloud.dev/blob
	// bucket URL). Default: file://<CacheDir>/disks.
	StoreURL string
	// BakeTimeout bounds a bake boot (default 30 min): a guest that has
	// not printed BakeMarker by then fails the build with the console's
	// tail.
	BakeTimeout time.Duration
	// Logger receives structured progress; nil discards.
	Logger *slog.Logger
	// Progress, when a terminal, shows steps and long-running output as
	// they happen; nil shows nothing (use Logger).
	Progress io.Writer
}

// Builder builds images from recipes. It is safe for concurrent use, also
// across processes sharing a cache directory (file locks).
type Builder struct {
	opts     Options
	log      *slog.Logger
	progress *progress
	euidFunc func() int // tests pretend not to be root
}

// New returns a Builder.
func New(opts Options) *Builder {
	if opts.CacheDir == "" {
		opts.CacheDir = defaultCacheDir()
	}
	if opts.Busybox == "" {
		opts.Busybox = DefaultBusybox
	}
	if opts.BakeTimeout == 0 {
		opts.BakeTimeout = bakeTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Builder{opts: opts, log: log, progress: newProgress(opts.Progress, log)}
}

func defaultCacheDir() string {
	if os.Geteuid() == 0 && os.Getenv("XDG_CACHE_HOME") == "" {
		return "/var/cache/endpointkit"
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "endpointkit")
	}
	return filepath.Join(os.TempDir(), "endpointkit-cache")
}

// Result is a built image.
type Result struct {
	Image *vmimage.Image
	// Key is the content address of recipe + inputs.
	Key string
	// Cached says the image came from the cache (nothing was built).
	Cached bool
	// Elapsed is the wall time of the call.
	Elapsed time.Duration
}

// Build builds r into outDir. The image is assembled in a temporary
// directory beside outDir and swapped in atomically: a failed or cancelled
// build leaves no partial image, and a previous image in outDir stays
// untouched until the new one is complete.
func (b *Builder) Build(ctx context.Context, r *Recipe, outDir string) (*Result, error) {
	start := time.Now()
	res, err := b.BuildCached(ctx, r)
	if err != nil {
		return nil, err
	}
	out, err := filepath.Abs(outDir)
	if err != nil {
		return nil, err
	}
	if cur, err := vmimage.Load(out); err == nil && cur.Manifest.BuildKey == res.Key && !b.opts.NoCache {
		if err := WriteContainerFiles(out, recipeRel(out, r.Path)); err != nil {
			return nil, err
		}
		res.Image, res.Elapsed = cur, time.Since(start)
		return res, nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return nil, fmt.Errorf("imagebuild: output: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(out), "."+filepath.Base(out)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: output: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := copyDir(res.Image.Dir, tmp); err != nil {
		return nil, fmt.Errorf("imagebuild: output %s: %w", out, err)
	}
	if err := WriteContainerFiles(tmp, recipeRel(out, r.Path)); err != nil {
		return nil, err
	}
	os.Chmod(tmp, 0o755)
	if err := swapDir(tmp, out); err != nil {
		return nil, fmt.Errorf("imagebuild: output %s: %w", out, err)
	}
	im, err := vmimage.Load(out)
	if err != nil {
		return nil, err
	}
	res.Image, res.Elapsed = im, time.Since(start)
	return res, nil
}

func recipeRel(out, recipe string) string {
	if rel, err := filepath.Rel(out, recipe); err == nil {
		return rel
	}
	return recipe
}

// swapDir puts the complete directory tmp at out: atomically exchanged
// with an existing out (whose old content ends up in tmp), or renamed.
func swapDir(tmp, out string) error {
	if _, err := os.Stat(out); err == nil {
		return unix.Renameat2(unix.AT_FDCWD, tmp, unix.AT_FDCWD, out, unix.RENAME_EXCHANGE)
	}
	return os.Rename(tmp, out)
}

// BuildCached builds r into the cache (images/<key>) unless it is there
// already, and returns that directory, which must be treated as read-only.
func (b *Builder) BuildCached(ctx context.Context, r *Recipe) (*Result, error) {
	start := time.Now()
	if err := r.Resolve(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(b.opts.CacheDir, 0o755); err != nil {
		return nil, fmt.Errorf("imagebuild: cache: %w", err)
	}
	p, err := b.plan(ctx, r)
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(b.opts.CacheDir, "images", r.Slug+"-"+p.key[:16])
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if !b.opts.NoCache {
		if im, err := vmimage.Load(dir); err == nil && im.Manifest.BuildKey == p.key {
			b.log.Info("image cached", "slug", r.Slug, "dir", dir)
			return &Result{Image: im, Key: p.key, Cached: true, Elapsed: time.Since(start)}, nil
		}
	}
	b.progress.Step(fmt.Sprintf("build %s (%s)", r.Slug, r.Kind))
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	defer os.RemoveAll(tmp)
	m, err := p.build(ctx, tmp)
	if err != nil {
		return nil, err
	}
	if err := finishImage(tmp, r, m, p.key); err != nil {
		return nil, fmt.Errorf("imagebuild: %w", err)
	}
	os.Chmod(tmp, 0o755)
	if err := swapDir(tmp, dir); err != nil {
		return nil, fmt.Errorf("imagebuild: cache: %w", err)
	}
	im, err := vmimage.Load(dir)
	if err != nil {
		return nil, err
	}
	b.progress.Done(fmt.Sprintf("%s built in %s", r.Slug, time.Since(start).Round(100*time.Millisecond)))
	return &Result{Image: im, Key: p.key, Elapsed: time.Since(start)}, nil
}

// buildPlan is everything a build needs, resolved, and its cache key.
type buildPlan struct {
	key   string
	build func(ctx context.Context, dir string) (*vmimage.Manifest, error)
}

// plan resolves the inputs of r (downloading and extracting what is
// missing from the cache) and computes the cache key.
func (b *Builder) plan(ctx context.Context, r *Recipe) (*buildPlan, error) {
	inputs := map[string]string{"builder": builderFingerprint(), "goarch": runtime.GOARCH}
	var k *kernel
	if r.Kernel.Package != "" {
		debs := filepath.Join(b.opts.CacheDir, "debs")
		if err := os.MkdirAll(debs, 0o755); err != nil {
			return nil, err
		}
		pkg, err := b.resolveKernel(ctx, r.Kernel.Package, debs)
		if err != nil {
			return nil, err
		}
		deb, err := b.downloadDeb(ctx, pkg, debs)
		if err != nil {
			return nil, err
		}
		k, err = b.prepareKernel(ctx, deb, pkg.SHA256, filepath.Join(b.opts.CacheDir, "kernels"))
		if err != nil {
			return nil, err
		}
		inputs["kernel"] = pkg.SHA256
	}
	for i, f := range r.Files {
		sum, err := treeSHA256(f.Src)
		if err != nil {
			return nil, r.errAt(fmt.Sprintf("files[%d].src", i), "%v", err)
		}
		inputs[fmt.Sprintf("file%d", i)] = sum
	}
	bp := &buildPlan{}
	switch r.Kind {
	case "initramfs":
		in, err := b.initramfsInputs(ctx, r, k)
		if err != nil {
			return nil, err
		}
		for name, path := range map[string]string{"agent": in.agent, "busybox": in.busybox} {
			sum, err := vmimage.FileSHA256(path)
			if err != nil {
				return nil, fmt.Errorf("imagebuild: %s: %w", name, err)
			}
			inputs[name] = sum
		}
		bp.build = func(ctx context.Context, dir string) (*vmimage.Manifest, error) {
			return b.buildInitramfs(ctx, r, in, dir)
		}
	case "debootstrap":
		in, err := b.debootstrapInputs(ctx, r, k)
		if err != nil {
			return nil, err
		}
		inputs["agent"] = in.agentSum
		bp.build = func(ctx context.Context, dir string) (*vmimage.Manifest, error) {
			return b.buildDebootstrap(ctx, r, in, dir)
		}
	case "disk":
		inputs["disk"] = r.Disk.SHA256
		if r.Disk.CloudInit {
			inputs["seed"] = seedFormat
		}
		if r.baked() {
			inputs["bake"] = bakeFormat
		}
		bp.build = func(ctx context.Context, dir string) (*vmimage.Manifest, error) {
			return b.buildDisk(ctx, r, dir)
		}
	case "iso":
		sum, err := vmimage.FileSHA256(r.ISO.Answers.File)
		if err != nil {
			return nil, r.errAt("iso.answers.file", "%v", err)
		}
		inputs["iso"], inputs["answers"], inputs["bake"] = r.ISO.SHA256+" "+isoFormat, sum, bakeFormat
		bp.build = func(ctx context.Context, dir string) (*vmimage.Manifest, error) {
			return b.buildISO(ctx, r, dir)
		}
	}
	h := sha256.New()
	enc := json.NewEncoder(h)
	if err := enc.Encode(keyRecipe(r)); err != nil {
		return nil, err
	}
	if err := enc.Encode(inputs); err != nil { // map keys are sorted
		return nil, err
	}
	bp.key = hex.EncodeToString(h.Sum(nil))
	return bp, nil
}

func (b *Builder) initramfsInputs(ctx context.Context, r *Recipe, k *kernel) (initramfsInputs, error) {
	in := initramfsInputs{kernel: k, busybox: b.opts.Busybox}
	var err error
	if in.modules, err = k.resolveModules(append(bootModules(), r.Kernel.Modules...)); err != nil {
		return in, r.errAt("kernel.modules", "%v", err)
	}
	share, err := k.resolveModules(shareModules())
	if err != nil {
		return in, err
	}
	in.shareModules = slices.DeleteFunc(share, func(m string) bool { return slices.Contains(in.modules, m) })
	if in.applets, err = busyboxApplets(ctx, in.busybox); err != nil {
		return in, err
	}
	in.agent, err = b.agentBinary(ctx, r)
	return in, err
}

// keyRecipe is r without host paths: the files, agent and disk they name
// enter the key by content, so moving the checkout keeps the cache valid.
func keyRecipe(r *Recipe) Recipe {
	kr := *r
	kr.Files = append([]RecipeFileCopy(nil), r.Files...)
	for i := range kr.Files {
		kr.Files[i].Src = ""
	}
	kr.Agent = ""
	if r.Disk != nil {
		d := *r.Disk
		d.Path, d.URL = "", ""
		kr.Disk = &d
	}
	if r.ISO != nil {
		iso := *r.ISO
		iso.Path, iso.URL, iso.Answers.File = "", "", ""
		kr.ISO = &iso
	}
	return kr
}

// IsTempName reports whether name, a base name, is one of the temporary
// entries a build makes beside its output or in its cache: ".OUT.tmp-*",
// ".work-*", ".download-*", ".kernel-*" and a disk build's ".source". A
// build removes its own, also when it fails; one found while no build runs
// was left by a killed process and may be deleted.
func IsTempName(name string) bool {
	if name == ".source" || strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-") {
		return true
	}
	for _, p := range []string{".work-", ".download-", ".kernel-"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}
