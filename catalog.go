package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/vmimage"
)

// DefaultImageDir is where a Catalog looks for built image directories
// (<dir>/<slug>/manifest.json) when Catalog.Dirs is empty.
const DefaultImageDir = "/var/cache/endpointkit/images"

// Catalog maps image slugs to built image directories (the output of
// package imagebuild: manifest.json, image.meta.yaml and the artefacts).
// For a slug it takes, in order:
//
//  1. Images[slug], an image directory given explicitly;
//  2. DIR/slug, or DIR itself when its manifest has the slug, for each
//     DIR in Dirs (default DefaultImageDir) — images built elsewhere;
//  3. a recipe DIR/slug/image.yaml in Recipes, built on demand with
//     imagebuild.Builder.BuildCached: content-addressed, so an unchanged
//     recipe is a cache hit (~0.1 s) and a changed one is rebuilt.
//
// Up also appends to Recipes the images/ folder of the curriculum the
// lesson sits in (examples/images for examples/lessons/*). A slug found
// nowhere, or a recipe that cannot be built (a vendor disk that is not
// there), fails before anything starts.
type Catalog struct {
	Images  map[string]string
	Dirs    []string
	Recipes []string
	// Build configures on-demand builds (cache directory, agent, logger,
	// terminal progress); the zero value is imagebuild's defaults.
	Build imagebuild.Options
}

// ImageSource is where a Catalog found an image.
type ImageSource struct {
	Slug string
	// Dir is a built image directory; empty when the image must be built
	// from Recipe.
	Dir    string
	Recipe *imagebuild.Recipe
}

func (c Catalog) dirs() []string {
	if len(c.Dirs) == 0 {
		return []string{DefaultImageDir}
	}
	return c.Dirs
}

// Find locates slug without building anything. A recipe is loaded and
// resolved, so a recipe that cannot be built (bad field, missing vendor
// disk) fails here, wrapping ErrUnbuildable. A slug found nowhere wraps
// ErrUnknownImage and says where it was looked for.
func (c Catalog) Find(slug string) (ImageSource, error) {
	if d, ok := c.Images[slug]; ok {
		if _, err := loadImageDir(d, slug); err != nil {
			return ImageSource{}, err
		}
		return ImageSource{Slug: slug, Dir: d}, nil
	}
	var looked []string
	for _, d := range c.dirs() {
		for _, cand := range []string{filepath.Join(d, slug), d} {
			im, err := vmimage.Load(cand)
			switch {
			case err == nil && im.Manifest.Slug == slug:
				return ImageSource{Slug: slug, Dir: cand}, nil
			case err == nil && cand != d:
				return ImageSource{}, fmt.Errorf("image %q: %s holds image %q (manifest.json slug): %w", slug, cand, im.Manifest.Slug, ErrUnknownImage)
			case err != nil && !errors.Is(err, os.ErrNotExist):
				return ImageSource{}, fmt.Errorf("image %q: %w", slug, err)
			}
		}
		looked = append(looked, filepath.Join(d, slug, vmimage.ManifestFile))
	}
	var antidoteOnly string
	for _, d := range c.Recipes {
		rdir := filepath.Join(d, slug)
		file := filepath.Join(rdir, imagebuild.RecipeFile)
		if _, err := os.Stat(file); err != nil {
			if _, err := os.Stat(filepath.Join(rdir, lessonmeta.ImageFile)); err == nil && antidoteOnly == "" {
				antidoteOnly = rdir
			}
			looked = append(looked, file)
			continue
		}
		r, err := imagebuild.LoadRecipe(rdir)
		if err == nil {
			err = r.Resolve()
		}
		if err != nil {
			return ImageSource{}, fmt.Errorf("image %q: recipe %s cannot be built (%w): %w", slug, file, ErrUnbuildable, err)
		}
		if r.Slug != slug {
			return ImageSource{}, fmt.Errorf("image %q: recipe %s builds image %q (slug:): %w", slug, file, r.Slug, ErrUnbuildable)
		}
		return ImageSource{Slug: slug, Recipe: r}, nil
	}
	msg := fmt.Sprintf("image %q: no built image and no recipe; looked for %s", slug, strings.Join(looked, ", "))
	if antidoteOnly != "" {
		msg += fmt.Sprintf(" (%s is an Antidote container image, not an endpointkit VM image)", antidoteOnly)
	}
	return ImageSource{}, fmt.Errorf("%s: build it (`imagebuild build -o DIR/%s RECIPE`) and add DIR to the image dirs, or put its recipe at RECIPES/%s/%s and add RECIPES to the recipe dirs: %w",
		msg, slug, slug, imagebuild.RecipeFile, ErrUnknownImage)
}

// Resolve returns the image of src, building it first when it comes from
// a recipe. ctx bounds the build.
func (c Catalog) Resolve(ctx context.Context, src ImageSource) (im *vmimage.Image, built bool, err error) {
	if src.Dir != "" {
		im, err := loadImageDir(src.Dir, src.Slug)
		return im, false, err
	}
	res, err := imagebuild.New(c.Build).BuildCached(ctx, src.Recipe)
	if err != nil {
		return nil, false, fmt.Errorf("image %q: build %s: %w", src.Slug, src.Recipe.Path, err)
	}
	return res.Image, !res.Cached, nil
}

// loadImageDir loads a built image directory and checks its slug.
func loadImageDir(dir, slug string) (*vmimage.Image, error) {
	im, err := vmimage.Load(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("image %q: %s is not a built image directory (no %s): %w", slug, dir, vmimage.ManifestFile, ErrUnknownImage)
		}
		return nil, fmt.Errorf("image %q: %w", slug, err)
	}
	if im.Manifest.Slug != slug {
		return nil, fmt.Errorf("image %q: %s holds image %q: %w", slug, dir, im.Manifest.Slug, ErrUnknownImage)
	}
	return im, nil
}

// imageMetas serves the image.meta.yaml of resolved image directories to
// endpoint.Build.
type imageMetas map[string]*vmimage.Image

func (m imageMetas) Image(slug string) (*lessonmeta.Image, error) {
	im, ok := m[slug]
	if !ok {
		return nil, fmt.Errorf("image %q: %w", slug, lessonmeta.ErrNoImage)
	}
	return lessonmeta.LoadImage(filepath.Join(im.Dir, lessonmeta.ImageFile), lessonmeta.Options{})
}
