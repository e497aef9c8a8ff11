package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// runHeal is the instance's healer (endpointkit.Heal), as `lesson up`
// starts it: `endpoint heal --dir DIR`. SIGTERM and SIGINT end it.
func runHeal(ctx context.Context, args []string, _ io.Reader, _, stderr io.Writer) error {
	fs := flag.NewFlagSet("heal", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "", "the instance's state directory (required)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", qemulaunch.ErrUsage, err)
	}
	if *dir == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: give --dir DIR and nothing else", qemulaunch.ErrUsage)
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	opts := endpointkit.Options{StateRoot: filepath.Dir(*dir), Launcher: self, Logger: log,
		Progress: func(e endpointkit.Event) { log.Info(e.Message, "step", e.Step, "endpoint", e.Endpoint, "err", e.Err) }}
	return endpointkit.Heal(ctx, *dir, opts)
}
