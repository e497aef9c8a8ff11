package endpointkit_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Launch a lesson, look at its endpoints, move it to stage 1 and remove it.
// Needs root and QEMU, so it has no checked output.
func ExampleUp() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt) // Ctrl-C: Up removes what it started
	defer stop()
	inst, err := endpointkit.Up(ctx, "examples/lessons/linux-triangle", endpointkit.Options{
		Stage:    0,
		Logger:   slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Progress: func(e endpointkit.Event) { fmt.Println(e.Elapsed, e.Message) },
	})
	var cerr *endpointkit.ConfigureError
	if errors.As(err, &cerr) {
		log.Printf("up, but stage 0 failed on some endpoints: %v", err) // inst is usable
	} else if err != nil {
		log.Fatal(err) // nothing is left running
	}
	for _, e := range inst.Endpoints {
		fmt.Println(e.Name, e.State, e.Address, e.ConsoleSocket)
		for _, p := range e.Presentations {
			fmt.Println("  ", p.Name, p.Access) // e.g. an ssh command line
		}
	}
	if err := inst.Configure(ctx, 1); err != nil {
		log.Print(err)
	}
	if err := inst.Down(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Reattach to a running instance from its state directory, as a second
// process would, check it and remove it.
func ExampleOpen() {
	dir := endpointkit.InstanceDir("", "linux-triangle") // /run/endpointkit/linux-triangle
	inst, err := endpointkit.Open(dir, endpointkit.Options{})
	if errors.Is(err, endpointkit.ErrNoInstance) {
		return
	}
	if err != nil {
		// A damaged record: Teardown still removes everything.
		log.Fatal(endpointkit.Teardown(context.Background(), dir, endpointkit.Options{}))
	}
	for _, e := range inst.Status(context.Background()) { // from the runtime: launcher processes and health files
		fmt.Println(e.Name, e.State, e.Error)
	}
	if err := inst.Down(context.Background()); err != nil {
		log.Fatal(err)
	}
}

// Find images by slug: built image directories first, then recipes, which
// Up builds on demand.
func ExampleCatalog_Find() {
	images, err := os.MkdirTemp("", "images")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(images)
	// A built image directory (normally written by imagebuild).
	os.MkdirAll(filepath.Join(images, "tiny"), 0o755)
	if err := vmimage.Write(filepath.Join(images, "tiny"), vmimage.Manifest{Slug: "tiny", Kind: vmimage.KindInitramfs}); err != nil {
		log.Fatal(err)
	}
	cat := endpointkit.Catalog{Dirs: []string{images}}
	src, err := cat.Find("tiny")
	fmt.Println(filepath.Base(src.Dir), src.Recipe == nil, err)
	_, err = cat.Find("vqfx-snap1")
	fmt.Println(errors.Is(err, endpointkit.ErrUnknownImage))
	// Output:
	// tiny true <nil>
	// true
}
