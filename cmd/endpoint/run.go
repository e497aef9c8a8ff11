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
		"hostkeys":       runHostKeys,
		"logs":           runLogs,
		"remove-bridges": runRemoveBridges,
		"heal":           runHeal,
		"nic":            runNIC,
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: endpoint run|console|health|hostkeys|logs|remove-bridges|heal|nic [flags]  (endpoint COMMAND -h for flags)")
		if len(args) == 0 {
			return fmt.Errorf("%w: no command", qemulaunch.ErrUsage)
		}
		return fmt.Errorf("%w: unknown command %q", qemulaunch.ErrUsage, args[0])
	}
	return cmds[args[0]](ctx, args[1:], stdin, stdout, stderr)
}

// runRun is flags → launch → config → supervise; SIGTERM and SIGINT stop
// the guest gracefully, SIGUSR1 restarts it (SIGUSR2: on a fresh overlay).
func runRun(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	l, err := qemulaunch.ParseLaunch(args, os.Getenv, stderr)
	if err != nil {
		return err
	}
	cfg, err := l.Config(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		return err
	}
	sigs, usr := make(chan os.Signal, 2), make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	signal.Notify(usr, syscall.SIGUSR1, syscall.SIGUSR2)
	defer signal.Stop(sigs)
	defer signal.Stop(usr)
	restart, done := make(chan qemulaunch.RestartRequest), make(chan struct{})
	defer close(done)
	go func() {
		for {
			select {
			case sig := <-usr:
				select {
				case restart <- qemulaunch.RestartRequest{Reset: sig == syscall.SIGUSR2}:
				case <-done:
					return
				}
			case <-done:
				return
			}
		}
	}()
	o := l.SuperviseOptions()
	o.Stdout, o.Stderr, o.Stop, o.Restart = stdout, stderr, sigs, restart
	return qemulaunch.Supervise(ctx, cfg, o)
}
