package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// runTest boots a built image with the product launcher, waits until it is
// ready, logs in over SSH as the image's user, runs the image's self-tests
// and stops it.
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
	return testImage(ctx, im, qemulaunch.Accel(*accel), *timeout, log, stdout)
}

// testImage boots im, logs in, runs its self-tests and stops it, within
// timeout, and prints the report.
func testImage(ctx context.Context, im *vmimage.Image, accel qemulaunch.Accel, timeout time.Duration, log *slog.Logger, stdout io.Writer) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rep, err := qemulaunch.TestImage(ctx, im, accel, log)
	if err != nil {
		var st *qemulaunch.SelfTestError
		if errors.As(err, &st) {
			return err
		}
		return fmt.Errorf("image %s: %w", im.Manifest.Slug, err)
	}
	for _, t := range rep.Tests {
		fmt.Fprintf(stdout, "image %s: self-test %q passed in %.2fs\n", im.Manifest.Slug, t.Name, t.Elapsed.Seconds())
	}
	fmt.Fprintf(stdout, "image %s: %s\n", im.Manifest.Slug, rep)
	return nil
}
