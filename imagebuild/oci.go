package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// OCIDir is the OCI image layout inside an image directory.
const OCIDir = "oci"

// ociFormat is part of every OCI layer's cache key: bump it when the
// layers' contents change in a way their inputs do not show.
const ociFormat = "endpointkit-oci/1"

// Annotations of the image in index.json.
const (
	annotationRefName        = "org.opencontainers.image.ref.name"
	annotationContainerdName = "io.containerd.image.name"
)

// ErrLayout: a directory is not a readable OCI image layout of an endpoint
// image (missing, corrupt, or holding no image).
var ErrLayout = errors.New("not a usable OCI image layout")

// OCIOptions configure [Builder.BuildOCI]. The zero value builds the
// endpoint launcher with `go build`, dates everything at
// $SOURCE_DATE_EPOCH (else the Unix epoch) and boot-checks the runtime.
type OCIOptions struct {
	// EndpointBinary is a pre-built static (CGO_ENABLED=0) endpoint
	// launcher; default: built from ./cmd/endpoint in Options.GoDir.
	EndpointBinary string
	// Epoch dates the layers' files and the config; default
	// $SOURCE_DATE_EPOCH, else 1970-01-01 (the image's inputs date it
	// better than the clock, which would make every build differ).
	Epoch *time.Time
	// RefName names the image in index.json and in exported tarballs;
	// default "endpointkit.local/SLUG:latest".
	RefName string
	// SkipBootCheck does not boot the image with the runtime layer's QEMU
	// (see [Builder.BuildOCI]).
	SkipBootCheck bool
}

// OCILayer describes one layer of a built image.
type OCILayer struct {
	Name   string // runtime, endpoint, image
	Digest string // sha256:… of the compressed blob
	Size   int64  // compressed bytes
	// Uncompressed is the tar's size; Cached says the blob came from the
	// cache.
	Uncompressed int64
	Cached       bool
}

// OCIResult is an assembled OCI image.
type OCIResult struct {
	Dir    string // the layout (IMAGE_DIR/oci)
	Digest string // manifest digest
	Layers []OCILayer
	// BootChecked says the runtime booted the image (now or in an
	// earlier build with the same layers).
	BootChecked bool
	Elapsed     time.Duration
}

// Size is the compressed size of all layers.
func (r *OCIResult) Size() int64 {
	var n int64
	for _, l := range r.Layers {
		n += l.Size
	}
	return n
}

func sourceDateEpoch() (time.Time, error) {
	v := os.Getenv("SOURCE_DATE_EPOCH")
	if v == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return time.Time{}, fmt.Errorf("imagebuild: SOURCE_DATE_EPOCH=%q: want seconds since 1970 (as `git log -1 --format=%%ct` prints)", v)
	}
	return time.Unix(n, 0).UTC(), nil
}

// BuildOCI assembles the OCI image of the built image directory im and
// writes it as an OCI image layout at im.Dir/oci (replaced atomically).
// Three layers, each cached by its inputs: the QEMU runtime (shared by all
// endpoint images: QEMU, the libraries it links, its firmware and ROMs, CA
// certificates — from the exact Debian packages apt resolves), the static
// endpoint launcher, and the VM artefacts under /image. The config runs
// `endpoint run --image /image` and labels the image with its ports, APIs
// and users ([SpecFor]). Same inputs give the same digest.
//
// Unless opts.SkipBootCheck, the image is booted under TCG with the
// runtime layer's own QEMU, chrooted into the extracted layers, until the
// manifest's readiness marker: a runtime missing a library or a ROM fails
// the build here rather than in a container. The check is remembered per
// runtime and image layer.
func (b *Builder) BuildOCI(ctx context.Context, im *vmimage.Image, opts OCIOptions) (*OCIResult, error) {
	start := time.Now()
	epoch, err := sourceDateEpoch()
	if err != nil {
		return nil, err
	}
	if opts.Epoch != nil {
		epoch = opts.Epoch.UTC().Truncate(time.Second)
	}
	if err := VerifyArtifacts(im); err != nil {
		return nil, err
	}
	layersDir := filepath.Join(b.opts.CacheDir, "oci", "layers")
	res := &OCIResult{Dir: filepath.Join(im.Dir, OCIDir)}
	b.progress.Step("OCI runtime layer")
	rt, rtCached, err := b.runtimeLayer(ctx, layersDir, epoch)
	if err != nil {
		return nil, err
	}
	b.progress.Step("OCI endpoint layer")
	ep, epCached, err := b.endpointLayer(ctx, layersDir, opts.EndpointBinary, epoch)
	if err != nil {
		return nil, err
	}
	b.progress.Step("OCI image layer")
	vm, vmCached, err := b.imageLayer(im, layersDir, epoch)
	if err != nil {
		return nil, err
	}
	for _, l := range []struct {
		name   string
		l      *fileLayer
		cached bool
	}{{"runtime", rt, rtCached}, {"endpoint", ep, epCached}, {"image", vm, vmCached}} {
		res.Layers = append(res.Layers, OCILayer{Name: l.name, Digest: l.l.info.Digest, Size: l.l.info.Size,
			Uncompressed: l.l.info.Uncompressed, Cached: l.cached})
	}
	if !opts.SkipBootCheck {
		if err := b.bootCheck(ctx, im, rt, vm); err != nil {
			return nil, err
		}
		res.BootChecked = true
	}
	img, err := assembleImage(im, epoch, rt, ep, vm)
	if err != nil {
		return nil, err
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	res.Digest = d.String()
	refName := opts.RefName
	if refName == "" {
		refName = "endpointkit.local/" + im.Manifest.Slug + ":latest"
	}
	if err := writeLayout(img, refName, res.Dir); err != nil {
		return nil, fmt.Errorf("imagebuild: OCI layout %s: %w", res.Dir, err)
	}
	res.Elapsed = time.Since(start)
	b.log.Info("OCI image", "dir", res.Dir, "digest", res.Digest, "bytes", res.Size(), "took", res.Elapsed)
	return res, nil
}

// runtimeLayer returns the QEMU runtime layer for the host's apt lists.
func (b *Builder) runtimeLayer(ctx context.Context, layersDir string, epoch time.Time) (*fileLayer, bool, error) {
	debs := filepath.Join(b.opts.CacheDir, "debs")
	if err := os.MkdirAll(debs, 0o755); err != nil {
		return nil, false, err
	}
	pkgs, err := b.resolveRuntime(ctx, RuntimeRoots, debs)
	if err != nil {
		return nil, false, err
	}
	sel := defaultRuntimeSelection()
	return b.cachedLayer(layersDir, "runtime", runtimeKey(pkgs, sel), epoch, func() (layerFiles, error) {
		paths, err := b.downloadDebs(ctx, pkgs, debs)
		if err != nil {
			return nil, err
		}
		b.progress.Step(fmt.Sprintf("extract %d packages", len(pkgs)))
		roots, err := extractDebs(ctx, pkgs, paths, filepath.Join(b.opts.CacheDir, "debs-x"))
		if err != nil {
			return nil, err
		}
		tree, err := newPkgTree(roots)
		if err != nil {
			return nil, err
		}
		picked, err := tree.selectRuntime(sel)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: %w (packages: %d resolved from %v)", err, len(pkgs), RuntimeRoots)
		}
		files := layerFiles{}
		for dst, src := range picked {
			if err := files.addDisk(dst, src); err != nil {
				return nil, err
			}
		}
		ca, err := tree.caBundle()
		if err != nil {
			return nil, err
		}
		files["/etc/ssl/certs/ca-certificates.crt"] = layerEntry{mode: 0o644, data: ca}
		files["/etc/passwd"] = layerEntry{mode: 0o644, data: []byte("root:x:0:0:root:/root:/usr/sbin/nologin\n")}
		files["/etc/group"] = layerEntry{mode: 0o644, data: []byte("root:x:0:\n")}
		files["/tmp"] = layerEntry{mode: fs.ModeDir | fs.ModeSticky | 0o777}
		files["/run"] = layerEntry{mode: fs.ModeDir | 0o755}
		files["/root"] = layerEntry{mode: fs.ModeDir | 0o700}
		return files, nil
	})
}

// endpointLayer holds the static launcher at ContainerEndpoint.
func (b *Builder) endpointLayer(ctx context.Context, layersDir, prebuilt string, epoch time.Time) (*fileLayer, bool, error) {
	bin := prebuilt
	if bin == "" {
		tmp, err := os.MkdirTemp(b.opts.CacheDir, ".work-")
		if err != nil {
			return nil, false, err
		}
		defer os.RemoveAll(tmp)
		if bin, err = b.buildEndpoint(ctx, tmp); err != nil {
			return nil, false, err
		}
	}
	sum, err := vmimage.FileSHA256(bin)
	if err != nil {
		return nil, false, fmt.Errorf("imagebuild: endpoint binary: %w", err)
	}
	if err := checkStatic(bin); err != nil {
		return nil, false, err
	}
	key := sha256.Sum256([]byte(ociFormat + " endpoint " + sum))
	return b.cachedLayer(layersDir, "endpoint", hex.EncodeToString(key[:]), epoch, func() (layerFiles, error) {
		return layerFiles{ContainerEndpoint: {mode: 0o755, src: bin}}, nil
	})
}

// EndpointPkg is the container entrypoint's package.
const EndpointPkg = modulePath + "/cmd/endpoint"

// buildEndpoint builds the launcher (CGO_ENABLED=0, -trimpath) into dir;
// Go's build cache makes a rebuild of unchanged sources take a moment.
func (b *Builder) buildEndpoint(ctx context.Context, dir string) (string, error) {
	if _, err := exec.LookPath("go"); err != nil {
		return "", fmt.Errorf("imagebuild: building the endpoint launcher needs the go command (%w); or pass a pre-built one (--endpoint)", ErrMissingTool)
	}
	goDir := b.opts.GoDir
	if goDir == "" {
		goDir, _ = os.Getwd()
	}
	srcDir, inModule, err := endpointkitDir(ctx, goDir)
	if err != nil {
		return "", err
	}
	pkg, wd := EndpointPkg, goDir
	if inModule {
		pkg, wd = "./cmd/endpoint", srcDir
	}
	bin := filepath.Join(dir, "endpoint")
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", bin, pkg)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("imagebuild: go build %s in %s: %v: %s", pkg, wd, err, lastLines(out, 6))
	}
	return bin, nil
}

// imageLayer holds the image directory's manifest, metadata and artefacts
// under ContainerImageDir.
func (b *Builder) imageLayer(im *vmimage.Image, layersDir string, epoch time.Time) (*fileLayer, bool, error) {
	manifest, err := os.ReadFile(im.Path(vmimage.ManifestFile))
	if err != nil {
		return nil, false, fmt.Errorf("imagebuild: %w", err)
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s image\n%s\n", ociFormat, manifest)
	files := layerFiles{ContainerImageDir + "/" + vmimage.ManifestFile: {mode: 0o644, data: manifest}}
	for rel := range im.Manifest.Artifacts {
		files[ContainerImageDir+"/"+rel] = layerEntry{mode: 0o644, src: im.Path(rel)}
	}
	if _, ok := im.Manifest.Artifacts[MetaFile]; !ok {
		if _, err := os.Stat(im.Path(MetaFile)); err == nil {
			files[ContainerImageDir+"/"+MetaFile] = layerEntry{mode: 0o644, src: im.Path(MetaFile)}
			sum, _ := vmimage.FileSHA256(im.Path(MetaFile))
			fmt.Fprintln(h, sum)
		}
	}
	return b.cachedLayer(layersDir, "image-"+im.Manifest.Slug, hex.EncodeToString(h.Sum(nil)), epoch, func() (layerFiles, error) {
		return files, nil
	})
}

// assembleImage makes the image: the three layers and a config carrying
// the container spec, all dated epoch.
func assembleImage(im *vmimage.Image, epoch time.Time, layers ...*fileLayer) (v1.Image, error) {
	spec := SpecFor(&im.Manifest)
	base := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	what := []string{"QEMU runtime (Debian packages)", "endpoint launcher", "VM image " + im.Manifest.Slug}
	var adds []mutate.Addendum
	for i, l := range layers {
		adds = append(adds, mutate.Addendum{Layer: l, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "endpointkit imagebuild: " + what[i]}})
	}
	img, err := mutate.Append(base, adds...)
	if err != nil {
		return nil, err
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Author = "endpointkit imagebuild"
	cf.Config.Entrypoint = spec.Entrypoint
	cf.Config.Env = spec.Env
	cf.Config.Labels = spec.Labels
	cf.Config.StopSignal = "SIGTERM"
	cf.Config.ExposedPorts = map[string]struct{}{}
	for _, p := range spec.ExposedPorts {
		cf.Config.ExposedPorts[p] = struct{}{}
	}
	return mutate.ConfigFile(img, cf)
}

// writeLayout writes img as the only image of a fresh OCI layout at dir,
// swapped in atomically; layer blobs are hard-linked from the cache.
func writeLayout(img v1.Image, refName, dir string) error {
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "."+filepath.Base(dir)+".tmp-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755)
	p, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}
	blobs := filepath.Join(tmp, "blobs", "sha256")
	if err := os.MkdirAll(blobs, 0o755); err != nil {
		return err
	}
	for _, l := range layers {
		if fl, ok := l.(*fileLayer); ok {
			if err := linkOrCopy(fl.path, filepath.Join(blobs, fl.info.Digest[len("sha256:"):])); err != nil {
				return err
			}
		}
	}
	tag := refName
	if i := lastColonAfterSlash(refName); i >= 0 {
		tag = refName[i+1:]
	}
	if err := p.AppendImage(img, layout.WithAnnotations(map[string]string{
		annotationRefName: tag, annotationContainerdName: refName,
	})); err != nil {
		return err
	}
	if _, err := os.Stat(dir); err != nil {
		return os.Rename(tmp, dir)
	}
	return swapDir(tmp, dir)
}

// lastColonAfterSlash finds the tag separator of a reference (not a
// registry port's colon); -1 when there is no tag.
func lastColonAfterSlash(ref string) int {
	for i := len(ref) - 1; i >= 0; i-- {
		switch ref[i] {
		case ':':
			return i
		case '/':
			return -1
		}
	}
	return -1
}

// LoadOCI opens the OCI layout of an image directory (DIR/oci, or DIR
// itself when it is a layout) and returns its image and the name it
// carries. Errors wrap [ErrLayout] and name the directory.
func LoadOCI(dir string) (v1.Image, string, error) {
	ld := dir
	if _, err := os.Stat(filepath.Join(dir, "oci-layout")); err != nil {
		ld = filepath.Join(dir, OCIDir)
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("imagebuild: %s: %w: %s (rebuild it with `imagebuild build -o %s RECIPE`)", ld, ErrLayout, fmt.Sprintf(format, args...), dir)
	}
	raw, err := os.ReadFile(filepath.Join(ld, "oci-layout"))
	if err != nil {
		return nil, "", bad("%v", err)
	}
	var marker struct {
		Version string `json:"imageLayoutVersion"`
	}
	if err := json.Unmarshal(raw, &marker); err != nil || marker.Version == "" {
		return nil, "", bad("oci-layout is not {\"imageLayoutVersion\": …}")
	}
	idx, err := layout.ImageIndexFromPath(ld)
	if err != nil {
		return nil, "", bad("%v", err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, "", bad("index.json: %v", err)
	}
	if len(im.Manifests) == 0 {
		return nil, "", bad("index.json lists no image")
	}
	desc := im.Manifests[0]
	img, err := idx.Image(desc.Digest)
	if err != nil {
		return nil, "", bad("image %s: %v", desc.Digest, err)
	}
	// Read every blob once: a truncated or altered file must fail here,
	// not half-way through a push.
	if err := validateImage(img); err != nil {
		return nil, "", bad("%v", err)
	}
	return img, desc.Annotations[annotationContainerdName], nil
}
