package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/endpointkit/endpointkit/qemulaunch"
)

// Run runs the endpoint command line args (without the program name).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) error{
		"run":            runRun,
		"console":        runConsole,
		"health":         runHealth,
		"logs":           runLogs,
		"remove-bridges": runRemoveBridges,
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: endpoint run|console|health|logs|remove-bridges [flags]  (endpoint COMMAND -h for flags)")
		if len(args) == 0 {
			return fmt.Errorf("%w: no command", qemulaunch.ErrUsage)
		}
		return fmt.Errorf("%w: unknown command %q", qemulaunch.ErrUsage, args[0])
	}
	return cmds[args[0]](ctx, args[1:], stdin, stdout, stderr)
}

// runRun is flags → launch → config → supervise; SIGTERM and SIGINT stop
// the guest gracefully.
func runRun(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	l, err := qemulaunch.ParseLaunch(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	cfg, err := l.Config(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return err
	}
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	return qemulaunch.Supervise(ctx, cfg, qemulaunch.SuperviseOptions{Stdout: stdout, Stderr: stderr, Stop: sigs})
}
