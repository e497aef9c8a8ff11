package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/vmimage"
)

// ociFlags are build's flags for the OCI image and its push.
type ociFlags struct {
	endpoint, push, ca, ref *string
	insecure, skipBoot, no  *bool
}

func addOCIFlags(fs *flag.FlagSet) ociFlags {
	return ociFlags{
		endpoint: fs.String("endpoint", "", "pre-built static endpoint launcher for the container (default: go build ./cmd/endpoint)"),
		push:     fs.String("push", "", "after building, push the OCI image to this reference (REGISTRY/REPO:TAG)"),
		ca:       fs.String("ca", "", "PEM file of CAs trusted for the registry (with --push)"),
		ref:      fs.String("ref", "", "image name recorded in the OCI layout (default endpointkit.local/SLUG:latest)"),
		insecure: fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on loopback (with --push)"),
		skipBoot: fs.Bool("skip-boot-check", false, "do not boot the image with the QEMU runtime layer's own QEMU"),
		no:       fs.Bool("no-oci", false, "build the VM image only, without its OCI container image (DIR/oci)"),
	}
}

// check refuses contradictory flags.
func (f ociFlags) check() error {
	if *f.no && *f.push != "" {
		return fmt.Errorf("%w: --push needs the OCI image: drop --no-oci", errUsage)
	}
	return nil
}

// buildOCI assembles DIR/oci after a build and pushes it when asked.
func buildOCI(ctx context.Context, b *imagebuild.Builder, im *vmimage.Image, f ociFlags, stdout, stderr io.Writer) error {
	if *f.no {
		return nil
	}
	res, err := b.BuildOCI(ctx, im, imagebuild.OCIOptions{EndpointBinary: *f.endpoint, RefName: *f.ref, SkipBootCheck: *f.skipBoot})
	if err != nil {
		return err
	}
	checked := "boot-checked"
	if !res.BootChecked {
		checked = "not boot-checked"
	}
	fmt.Fprintf(stdout, "%s: OCI image %s %s (%.1f MB compressed, %s, %s)\n", im.Manifest.Slug, res.Dir, res.Digest,
		float64(res.Size())/1e6, checked, res.Elapsed.Round(1e7))
	for _, l := range res.Layers {
		how := "built"
		if l.Cached {
			how = "cached"
		}
		fmt.Fprintf(stderr, "  layer %-8s %s %7.1f MB (%s)\n", l.Name, l.Digest[:19], float64(l.Size)/1e6, how)
	}
	if *f.push == "" {
		return nil
	}
	return push(ctx, im.Dir, *f.push, imagebuild.PushOptions{CAFile: *f.ca, Insecure: *f.insecure}, stdout)
}

func push(ctx context.Context, dir, ref string, opts imagebuild.PushOptions, stdout io.Writer) error {
	res, err := imagebuild.Push(ctx, dir, ref, opts)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pushed %s (%d bytes uploaded in %s)\n", res.Pinned(), res.Uploaded, res.Elapsed.Round(1e7))
	return nil
}

func runPush(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flagSet("push", "IMAGE_DIR REF", stderr)
	ca := fs.String("ca", "", "PEM file of CAs trusted for the registry")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on loopback")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	return push(ctx, pos[0], pos[1], imagebuild.PushOptions{CAFile: *ca, Insecure: *insecure}, stdout)
}

func runExport(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flagSet("export", "IMAGE_DIR FILE.tar", stderr)
	tag := fs.String("tag", "", "name the image in the archive (default the layout's, endpointkit.local/SLUG:latest)")
	pos, err := parse(fs, args, 2)
	if err != nil {
		return err
	}
	if err := imagebuild.Export(pos[0], pos[1], *tag); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s (for ctr images import, docker load)\n", pos[1])
	return nil
}
