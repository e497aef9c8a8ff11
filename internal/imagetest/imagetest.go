// Package imagetest gives tests built endpoint images and a plain QEMU boot
// of them. Images are built once per machine into ektest.CacheDir (never
// the repository), content-addressed by recipe and inputs, so every test
// package and run shares them; file locks make concurrent test binaries
// wait for one build instead of racing. Tests skip, with the reason, when
// a tool the build needs is missing (run `make deps`) or, for debootstrap
// images, when not root.
//
//	im := imagetest.Tiny(t)        // *vmimage.Image, seconds cold, ~0.1 s cached
//	vm := imagetest.Boot(t, im, imagetest.BootOptions{})
//	client := vm.SSH(t)            // logged in as the image's sshUser
//
// CloudInitDisk is a vendor-disk stand-in that runs cloud-init and boots
// from its own GRUB, for tests of the disk builder's seed.
//
// Boot is a minimal launcher for image tests (TCG, user-mode networking
// with the guest's SSH port forwarded to a random local port, serial
// console captured); the product launcher is package qemulaunch.
package imagetest

import (
	"context"
	"encoding/json"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Tiny returns the examples/images/tiny image (initramfs: busybox and the
// guest agent), building it on first use.
func Tiny(tb testing.TB) *vmimage.Image {
	tb.Helper()
	return Build(tb, "tiny")
}

// Debian returns the examples/images/debian image (debootstrap bookworm);
// it needs root and about a minute cold.
func Debian(tb testing.TB) *vmimage.Image {
	tb.Helper()
	return Build(tb, "debian")
}

// FRR returns the examples/images/frr image (Debian with FRR: zebra,
// ospfd, bgpd; antidote in frrvty).
func FRR(tb testing.TB) *vmimage.Image {
	tb.Helper()
	return Build(tb, "frr")
}

// Netconf returns the examples/images/netconf image (Debian with yuma123
// netconfd behind sshd's netconf subsystem on port 830).
func Netconf(tb testing.TB) *vmimage.Image {
	tb.Helper()
	return Build(tb, "netconf")
}

// Build returns the image of the recipe examples/images/NAME (or of the
// recipe directory NAME when it is a path), building it into the test
// cache on first use.
func Build(tb testing.TB, name string) *vmimage.Image {
	tb.Helper()
	dir := name
	if filepath.Base(name) == name {
		dir = filepath.Join(ektest.RepoRoot(tb), "examples", "images", name)
	}
	r, err := imagebuild.LoadRecipe(dir)
	if err != nil {
		tb.Fatalf("imagetest: %v", err)
	}
	RequireBuildTools(tb, r.Kind)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b := imagebuild.New(imagebuild.Options{
		CacheDir: filepath.Join(ektest.CacheDir(tb), "imagebuild"),
		GoDir:    ektest.RepoRoot(tb),
	})
	res, err := b.BuildCached(ctx, r)
	if err != nil {
		tb.Fatalf("imagetest: build %s: %v", name, err)
	}
	return res.Image
}

// RequireBuildTools skips the test unless the tools for building an image
// of this kind (initramfs, debootstrap, disk) are present.
func RequireBuildTools(tb testing.TB, kind string) {
	tb.Helper()
	switch kind {
	case "initramfs":
		ektest.RequireTool(tb, "apt-get", "apt-cache", "dpkg-deb", "depmod", "xz", "go")
		if _, err := exec.LookPath("busybox"); err != nil {
			tb.Skip("needs busybox-static: run `make deps`")
		}
	case "debootstrap":
		ektest.RequireRoot(tb)
		ektest.RequireTool(tb, "apt-get", "apt-cache", "dpkg-deb", "depmod", "xz", "go", "debootstrap", "mkfs.ext4", "qemu-img")
	case "disk":
		ektest.RequireTool(tb, "qemu-img")
	case "iso":
		ektest.RequireTool(tb, "qemu-img", "xorriso")
	}
}

// NoTempFiles fails the test for each temporary build entry
// (imagebuild.IsTempName) in dirs or their subdirectories.
func NoTempFiles(tb testing.TB, dirs ...string) {
	tb.Helper()
	for _, d := range dirs {
		filepath.WalkDir(d, func(path string, e fs.DirEntry, err error) error {
			if err == nil && path != d && imagebuild.IsTempName(e.Name()) {
				tb.Errorf("temporary build entry left behind: %s", path)
			}
			return nil
		})
	}
}

// Copy copies an image directory into a directory of the test and loads
// it: the big artefacts (over 1 MiB) are hard links, which nothing
// writes; the small files, which a test may rewrite, are copies. The
// cached images are shared by every test: change a copy.
func Copy(tb testing.TB, im *vmimage.Image) *vmimage.Image {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), im.Manifest.Slug)
	if err := os.Mkdir(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	ents, err := os.ReadDir(im.Dir)
	if err != nil {
		tb.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(im.Dir, e.Name()), filepath.Join(dir, e.Name())
		if fi, err := e.Info(); err == nil && fi.Size() > 1<<20 {
			if err := os.Link(src, dst); err != nil {
				tb.Fatal(err)
			}
			continue
		}
		raw, err := os.ReadFile(src)
		if err != nil {
			tb.Fatal(err)
		}
		if err := os.WriteFile(dst, raw, 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	out, err := vmimage.Load(dir)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// CopyWith is Copy with the copy's manifest changed by change (nil:
// none).
func CopyWith(tb testing.TB, src *vmimage.Image, change func(*vmimage.Manifest)) *vmimage.Image {
	tb.Helper()
	im := Copy(tb, src)
	if change == nil {
		return im
	}
	change(&im.Manifest)
	raw, err := json.MarshalIndent(im.Manifest, "", "  ")
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(im.Dir, vmimage.ManifestFile), raw, 0o644); err != nil {
		tb.Fatal(err)
	}
	if im, err = vmimage.Load(im.Dir); err != nil {
		tb.Fatal(err)
	}
	return im
}

// OCI returns a copy (see Copy) of the image of recipe NAME with its OCI
// layout built now (imagebuild.Builder.BuildOCI: cached layers, the
// current endpoint launcher, boot-checked once per runtime and image
// layer), ready to push.
func OCI(tb testing.TB, name string) *vmimage.Image {
	tb.Helper()
	return OCIWith(tb, Build(tb, name), nil)
}

// OCIWith is OCI of a built image whose copy's manifest change changed
// first (nil: none), for an image as a test needs it.
func OCIWith(tb testing.TB, src *vmimage.Image, change func(*vmimage.Manifest)) *vmimage.Image {
	tb.Helper()
	ektest.RequireRoot(tb)
	ektest.RequireQEMU(tb)
	im := CopyWith(tb, src, change)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	b := imagebuild.New(imagebuild.Options{CacheDir: filepath.Join(ektest.CacheDir(tb), "imagebuild"), GoDir: ektest.RepoRoot(tb)})
	if _, err := b.BuildOCI(ctx, im, imagebuild.OCIOptions{}); err != nil {
		tb.Fatalf("imagetest: OCI image of %s: %v", src.Manifest.Slug, err)
	}
	return im
}
