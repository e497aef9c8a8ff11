package kuberun

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// localRefHost is the registry part of the reference imagebuild records in
// an OCI layout by default: a name, not a registry.
const localRefHost = "endpointkit.local/"

// images are the resolved images of one placement.
type images struct {
	bySlug map[string]kubeplan.Image
	lesson string // the lesson-content image by digest; "" for none
	// lessonFiles are the lesson directory's files when it goes in a
	// ConfigMap (lesson is "" then).
	lessonFiles []kubeplan.LessonFile
}

// resolveImages finds every endpoint image of p in a registry, by digest:
// Options.Images, else REGISTRY/SLUG with the digest of the image's OCI
// layout (built first when the image directory has none), else the
// reference the layout was built with. With push, each image the registry
// lacks is pushed and every reference is checked with the registry; the
// lesson directory goes in a ConfigMap (LessonFiles), or, when it is too
// large for one, as a lesson-content image made and pushed to the registry.
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
	if p.LessonDir == "" || p.Model == nil {
		return out, nil
	}
	files, err := LessonFiles(p.LessonDir)
	switch {
	case err == nil:
		out.lessonFiles = files
	case errors.Is(err, ErrLessonTooLarge) && o.Registry != "":
		if out.lesson, err = o.lessonImage(ctx, p.Model.Lesson, p.LessonDir, push, report); err != nil {
			return nil, err
		}
	case errors.Is(err, ErrLessonTooLarge):
		return nil, fmt.Errorf("lesson %s: %w: give a registry (Options.Registry, lesson --registry) to deliver it as a lesson-content image", p.Model.Lesson, err)
	default:
		return nil, fmt.Errorf("lesson %s: %w", p.Model.Lesson, err)
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
