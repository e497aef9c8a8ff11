package kuberun

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// localRefHost is the registry part of the reference imagebuild records in
// an OCI layout by default: a name, not a registry.
const localRefHost = "endpointkit.local/"

// images are the resolved images of one placement.
type images struct {
	bySlug map[string]kubeplan.Image
	lesson string // the lesson-content image by digest; "" for none
}

// resolveImages finds every endpoint image of p in a registry, by digest:
// Options.Images, else REGISTRY/SLUG with the digest of the image's OCI
// layout (built first when the image directory has none), else the
// reference the layout was built with. With push, each image the registry
// lacks is pushed and every reference is checked with the registry; the
// lesson-content image is made and pushed too when there is a registry.
// Without push nothing is sent or asked (rendering).
func (o *Options) resolveImages(ctx context.Context, p *endpointkit.Placement, push bool, report func(string)) (*images, error) {
	out := &images{bySlug: map[string]kubeplan.Image{}}
	for _, el := range p.Endpoints {
		slug := el.Endpoint.Image
		if _, ok := out.bySlug[slug]; ok {
			continue
		}
		ref, err := o.imageRef(ctx, slug, el.Image, push, report)
		if err != nil {
			return nil, err
		}
		var ports []int
		for _, f := range el.Launch.Forwards {
			ports = append(ports, f.GuestPort)
		}
		out.bySlug[slug] = kubeplan.Image{Ref: ref, Ports: ports, MemoryMiB: el.Image.Manifest.QEMU.MemoryMiB, CPUs: el.Image.Manifest.QEMU.CPUs,
			Identity: el.Image.Manifest.Identity == vmimage.IdentityFWCfg}
	}
	if o.Registry != "" && p.LessonDir != "" && p.Model != nil {
		ref, err := o.lessonImage(ctx, p.Model.Lesson, p.LessonDir, push, report)
		if err != nil {
			return nil, err
		}
		out.lesson = ref
	}
	return out, nil
}

// imageRef is one endpoint image's reference by digest.
func (o *Options) imageRef(ctx context.Context, slug string, im *vmimage.Image, push bool, report func(string)) (string, error) {
	if ref, ok := o.Images[slug]; ok {
		if !push {
			if strings.Contains(ref, "@sha256:") {
				return ref, nil
			}
			return "", fmt.Errorf("image %q: %s is not a reference by digest (REPOSITORY@sha256:…); rendering asks no registry", slug, ref)
		}
		d, err := imagebuild.Lookup(ctx, ref, o.Push)
		if err != nil {
			return "", fmt.Errorf("image %q: %w (%v)", slug, ErrImageNotInRegistry, err)
		}
		return pinned(ref, d), nil
	}
	img, refName, err := o.ociImage(ctx, im)
	if err != nil {
		return "", err
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	if o.Registry == "" {
		if refName == "" || strings.HasPrefix(refName, localRefHost) {
			return "", fmt.Errorf("image %q (%s, %s): %w: give a registry the cluster pulls from (--registry REGISTRY/PATH) to push it to, or build it with `imagebuild build --push REF`", slug, im.Dir, d, ErrImageNotInRegistry)
		}
		ref := pinned(refName, d.String())
		if push {
			if _, err := imagebuild.Lookup(ctx, ref, o.Push); err != nil {
				return "", fmt.Errorf("image %q: %w: %v (give --registry REGISTRY/PATH to push it)", slug, ErrImageNotInRegistry, err)
			}
		}
		return ref, nil
	}
	repo := strings.TrimSuffix(o.Registry, "/") + "/" + slug
	ref := repo + "@" + d.String()
	if !push {
		return ref, nil
	}
	_, err = imagebuild.Lookup(ctx, ref, o.Push)
	if err == nil {
		return ref, nil
	}
	if !errors.Is(err, imagebuild.ErrNotInRegistry) {
		return "", fmt.Errorf("image %q: %w", slug, err)
	}
	report(fmt.Sprintf("pushing image %s to %s", slug, repo))
	res, err := imagebuild.Push(ctx, im.Dir, repo+":latest", o.Push)
	if err != nil {
		return "", fmt.Errorf("image %q: %w", slug, err)
	}
	if res.Digest != d.String() {
		return "", fmt.Errorf("image %q: pushed %s but the layout has %s", slug, res.Digest, d)
	}
	return ref, nil
}

// ociImage is the image directory's OCI image, built first when it has
// no layout (imagebuild.Builder.BuildOCI writes IMAGE_DIR/oci).
func (o *Options) ociImage(ctx context.Context, im *vmimage.Image) (v1.Image, string, error) {
	if _, err := os.Stat(filepath.Join(im.Dir, imagebuild.OCIDir)); errors.Is(err, fs.ErrNotExist) {
		if _, err := imagebuild.New(o.Build).BuildOCI(ctx, im, imagebuild.OCIOptions{}); err != nil {
			return nil, "", fmt.Errorf("image %q: its OCI image: %w", im.Manifest.Slug, err)
		}
	}
	return imagebuild.LoadOCI(im.Dir)
}

// pinned is ref (a tag or a digest) with its tag replaced by digest.
func pinned(ref, digest string) string {
	if r, err := name.ParseReference(ref, name.WeakValidation); err == nil {
		return r.Context().Name() + "@" + digest
	}
	return ref + "@" + digest
}

// lessonImage makes the lesson-content image of the lesson directory
// (package kubeplan's init container copies it into each pod) and, with
// push, pushes it as REGISTRY/PATH/lesson-SLUG unless the registry has
// it. The image is reproducible: the same files give the same digest.
func (o *Options) lessonImage(ctx context.Context, slug, dir string, push bool, report func(string)) (string, error) {
	img, err := LessonImage(dir, o.Build.Busybox)
	if err != nil {
		return "", fmt.Errorf("lesson %s: content image: %w", slug, err)
	}
	d, err := img.Digest()
	if err != nil {
		return "", err
	}
	repo := strings.TrimSuffix(o.Registry, "/") + "/lesson-" + slug
	ref := repo + "@" + d.String()
	if !push {
		return ref, nil
	}
	if _, err := imagebuild.Lookup(ctx, ref, o.Push); err == nil {
		return ref, nil
	} else if !errors.Is(err, imagebuild.ErrNotInRegistry) {
		return "", fmt.Errorf("lesson %s: %w", slug, err)
	}
	report(fmt.Sprintf("pushing the lesson content to %s", repo))
	// Through an OCI layout: imagebuild.Push's transport rules and
	// credentials apply to it as to the endpoint images.
	tmp, err := os.MkdirTemp("", "ek-lesson-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	lp, err := layout.Write(tmp, empty.Index)
	if err != nil {
		return "", err
	}
	if err := lp.AppendImage(img); err != nil {
		return "", err
	}
	res, err := imagebuild.Push(ctx, tmp, repo+":latest", imagebuildPushNoState(o.Push))
	if err != nil {
		return "", fmt.Errorf("lesson %s: %w", slug, err)
	}
	if res.Digest != d.String() {
		return "", fmt.Errorf("lesson %s: pushed %s, made %s", slug, res.Digest, d)
	}
	return ref, nil
}

// imagebuildPushNoState keeps the lesson images out of the push state
// (their blobs are small and never shared).
func imagebuildPushNoState(o imagebuild.PushOptions) imagebuild.PushOptions {
	o.StateFile = "-"
	return o
}

// lessonEpoch dates every file of a lesson-content image, so the same
// files give the same digest.
var lessonEpoch = time.Unix(0, 0).UTC()

// LessonImage is the lesson-content image of a lesson directory: a static
// busybox (Debian's busybox-static, for the init container's cp) and the
// directory's files under kubeplan.LessonImageDir, reproducible (files
// sorted, dated 1970, owned by root).
func LessonImage(dir, busybox string) (v1.Image, error) {
	if busybox == "" {
		busybox = "/bin/busybox"
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("%w (the init container copies with a static busybox: install busybox-static)", err)
	}
	var tools bytes.Buffer
	tw := tar.NewWriter(&tools)
	put := func(h *tar.Header, data []byte) {
		h.ModTime, h.Uid, h.Gid, h.Format = lessonEpoch, 0, 0, tar.FormatPAX
		tw.WriteHeader(h)
		tw.Write(data)
	}
	put(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	put(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))}, bb)
	put(&tar.Header{Name: "bin/cp", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	put(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}, nil)
	if err := tw.Close(); err != nil {
		return nil, err
	}
	var content bytes.Buffer
	tw = tar.NewWriter(&content)
	root := strings.TrimPrefix(kubeplan.LessonImageDir, "/")
	put(&tar.Header{Name: root + "/", Typeflag: tar.TypeDir, Mode: 0o755}, nil)
	var paths []string
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p != dir {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		st, err := os.Lstat(p)
		if err != nil {
			return nil, err
		}
		h := &tar.Header{Name: root + "/" + filepath.ToSlash(rel), Mode: int64(st.Mode().Perm())}
		switch {
		case st.IsDir():
			h.Typeflag, h.Name = tar.TypeDir, h.Name+"/"
			put(h, nil)
		case st.Mode().IsRegular():
			data, err := os.ReadFile(p)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Size = tar.TypeReg, int64(len(data))
			put(h, data)
		case st.Mode()&fs.ModeSymlink != 0:
			// The lesson loader refuses links that leave the lesson;
			// inside it they keep their meaning.
			target, err := os.Readlink(p)
			if err != nil {
				return nil, err
			}
			h.Typeflag, h.Linkname = tar.TypeSymlink, target
			put(h, nil)
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	img := mutate.ConfigMediaType(mutate.MediaType(empty.Image, types.OCIManifestSchema1), types.OCIConfigJSON)
	for _, raw := range [][]byte{tools.Bytes(), content.Bytes()} {
		layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(raw)), nil },
			tarball.WithMediaType(types.OCILayer))
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: types.OCILayer,
			History: v1.History{Created: v1.Time{Time: lessonEpoch}, CreatedBy: "endpointkit: lesson content"}}); err != nil {
			return nil, err
		}
	}
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture, cf.Created = "linux", "amd64", v1.Time{Time: lessonEpoch}
	cf.Config.Env = []string{"PATH=/bin"}
	cf.Config.Entrypoint = []string{"/bin/cp"}
	return mutate.ConfigFile(img, cf)
}
