package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/mattn/go-isatty"
)

// errUsage marks command-line mistakes (exit code 2).
var errUsage = errors.New("usage")

// command is one subcommand.
type command struct {
	summary string
	run     func(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error
}

// commands lists the subcommands; add one by adding an entry.
func commands() map[string]command {
	return map[string]command{
		"build":      {"build RECIPE into an image directory", runBuild},
		"dockerfile": {"regenerate the Dockerfile and Makefile of an image directory", runDockerfile},
		"export":     {"write an image directory's OCI image as a tarball (ctr images import, docker load)", runExport},
		"push":       {"push an image directory's OCI image to a registry", runPush},
		"test":       {"boot an image directory, wait until ready, log in over SSH, run its self-tests, stop", runTest},
	}
}

// Run runs the imagebuild command line args (without the program name).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmds := commands()
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stderr, cmds)
		if len(args) == 0 {
			return fmt.Errorf("%w: no command", errUsage)
		}
		return nil
	}
	c, ok := cmds[args[0]]
	if !ok {
		usage(stderr, cmds)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return c.run(ctx, args[1:], stdin, stdout, stderr)
}

func usage(w io.Writer, cmds map[string]command) {
	names := make([]string, 0, len(cmds))
	for n := range cmds {
		names = append(names, n)
	}
	sort.Strings(names)
	fmt.Fprintln(w, "usage: imagebuild COMMAND [flags] ARGS")
	for _, n := range names {
		fmt.Fprintf(w, "  %-11s %s\n", n, cmds[n].summary)
	}
}

func exitCode(err error) int {
	if errors.Is(err, errUsage) {
		return 2
	}
	return 1
}

// flagSet makes a FlagSet that reports to stderr and returns errors.
func flagSet(name, args string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: imagebuild %s [flags] %s\n", name, args)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags that may come before or after the positional
// arguments and checks the number of positional arguments.
func parse(fs *flag.FlagSet, args []string, want int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, fmt.Errorf("%w: %v", errUsage, err)
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != want {
		fs.Usage()
		return nil, fmt.Errorf("%w: want %d argument(s), got %d", errUsage, want, len(pos))
	}
	return pos, nil
}

func runBuild(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flagSet("build", "-o OUT_DIR RECIPE_DIR_OR_FILE", stderr)
	out := fs.String("o", "", "output image directory (required)")
	noCache := fs.Bool("no-cache", false, "rebuild even if the cache has this image")
	cache := fs.String("cache", "", "cache directory (default /var/cache/endpointkit as root, else ~/.cache/endpointkit)")
	store := fs.String("store", "", "raw-image store of vendor disks, a bucket URL: file:///dir, s3://bucket?…, gs://bucket (default file://CACHE/disks)")
	verbose := fs.Bool("v", false, "log every step (debug level)")
	test := fs.Bool("test", false, "then boot the image and run its self-tests (as `imagebuild test`)")
	accel := fs.String("accel", "auto", "accelerator for --test: auto, kvm or tcg")
	oci := addOCIFlags(fs)
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return fmt.Errorf("%w: -o OUT_DIR is required", errUsage)
	}
	if err := oci.check(); err != nil {
		return err
	}
	r, err := imagebuild.LoadRecipe(pos[0])
	if err != nil {
		return err
	}
	for _, w := range r.Warnings {
		fmt.Fprintln(stderr, w)
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	opts := imagebuild.Options{CacheDir: *cache, NoCache: *noCache, StoreURL: *store,
		Logger: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))}
	if f, ok := stderr.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		opts.Progress = f
	}
	b := imagebuild.New(opts)
	res, err := b.Build(ctx, r, *out)
	if err != nil {
		return err
	}
	how := "built"
	if res.Cached {
		how = "from cache"
	}
	fmt.Fprintf(stdout, "%s: %s image %s in %s (%s)\n", res.Image.Manifest.Slug, res.Image.Manifest.Kind, res.Image.Dir,
		res.Elapsed.Round(1e7), how)
	if err := buildOCI(ctx, b, res.Image, oci, stdout, stderr); err != nil || !*test {
		return err
	}
	return testImage(ctx, res.Image, qemulaunch.Accel(*accel), 10*time.Minute, nil, stdout)
}

func runDockerfile(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flagSet("dockerfile", "IMAGE_DIR", stderr)
	recipe := fs.String("recipe", "", "recipe path for the Makefile's nightly target (default image.yaml)")
	pos, err := parse(fs, args, 1)
	if err != nil {
		return err
	}
	if err := imagebuild.WriteContainerFiles(pos[0], *recipe); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %s and %s in %s\n", imagebuild.DockerfileFile, imagebuild.MakefileFile, strings.TrimSuffix(pos[0], "/"))
	return nil
}
