package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// runTest boots a built image with the product launcher, waits until it is
// ready, logs in over SSH as the image's user and stops it.
func runTest(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flagSet("test", "IMAGE_DIR", stderr)
	accel := fs.String("accel", "auto", "accelerator: auto, kvm or tcg")
	timeout := fs.Duration("timeout", 10*time.Minute, "bound on the whole test")
	verbose := fs.Bool("v", false, "log the launcher's steps")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	im, err := vmimage.Load(pos[0])
	if err != nil {
		return err
	}
	var log *slog.Logger
	if *verbose {
		log = slog.New(slog.NewTextHandler(stderr, nil))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	rep, err := qemulaunch.TestImage(ctx, im, qemulaunch.Accel(*accel), log)
	if err != nil {
		return fmt.Errorf("image %s: %w", im.Manifest.Slug, err)
	}
	fmt.Fprintf(stdout, "image %s: %s\n", im.Manifest.Slug, rep)
	return nil
}
