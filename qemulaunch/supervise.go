package qemulaunch

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Exit statuses of `endpoint run`, as [ExitCode] maps [Supervise]'s error.
const (
	ExitCodeOK     = 0 // the guest powered off (asked or not)
	ExitCodeFailed = 1 // start-up or readiness failed
	ExitCodeUsage  = 2 // the command line or environment is wrong
	ExitCodeQuit   = 3 // the guest ignored poweroff; QEMU was told to quit
	ExitCodeKilled = 4 // QEMU had to be killed
	ExitCodeDied   = 5 // QEMU died unexpectedly
)

// consoleTailN is how much console a failure quotes.
const consoleTailN = 4000

// SuperviseError is how a supervised VM ended, when not cleanly: Code is
// the exit status (ExitCode*).
type SuperviseError struct {
	Code int
	Msg  string
}

func (e *SuperviseError) Error() string { return e.Msg }

// ExitCode maps an error of [Supervise] or [ParseLaunch] to the exit
// status of `endpoint run`.
func ExitCode(err error) int {
	var se *SuperviseError
	switch {
	case err == nil:
		return ExitCodeOK
	case errors.As(err, &se):
		return se.Code
	case errors.Is(err, ErrUsage), errors.Is(err, flag.ErrHelp):
		return ExitCodeUsage
	}
	return ExitCodeFailed
}

// SuperviseOptions are where [Supervise] reports and what stops it.
type SuperviseOptions struct {
	// Stdout gets one line per milestone (QEMU started, ready with the
	// forwards, stopping); Stderr how QEMU ended and, when it was not a
	// clean poweroff, the console tail. nil discards.
	Stdout, Stderr io.Writer
	// Stop delivers the signals that ask for a graceful stop (`endpoint
	// run` passes SIGTERM and SIGINT): one during start-up aborts it, one
	// later powers the guest off (Config.Timeouts.StopGrace, then quit,
	// then kill).
	Stop <-chan os.Signal
}

// Supervise is the launcher's whole life for one VM: [Start], [VM.Ready]
// (reported, not awaited: the VM runs on while it waits), then run until
// the guest powers off, QEMU ends, a signal on o.Stop asks for a graceful
// stop, or ctx ends (also a graceful stop). It returns nil when the guest
// powered off, asked or not; otherwise an error for [ExitCode] — a
// *SuperviseError for readiness failures and unclean ends.
func Supervise(ctx context.Context, cfg Config, o SuperviseOptions) error {
	stdout, stderr := o.Stdout, o.Stderr
	if stdout == nil {
		stdout = io.Discard
	}
	if stderr == nil {
		stderr = io.Discard
	}
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	go func() {
		select {
		case <-o.Stop: // a signal during start-up aborts it
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	t0 := time.Now()
	vm, err := Start(startCtx, cfg)
	if err != nil {
		return err
	}
	cancelStart()
	fmt.Fprintf(stdout, "endpoint %s: QEMU started (pid %d, %s)\n", cfg.Name, vm.PID(), vm.Plan().Accel)
	if ctl, err := serveControl(vm.Plan().Dir, vm.log, func() nicChanger { return runningVM(vm) }); err != nil {
		fmt.Fprintf(stderr, "endpoint %s: %v: NICs cannot be added or removed while it runs\n", cfg.Name, err)
	} else {
		defer ctl.close(vm.Plan().Dir)
	}
	readyc := make(chan error, 1)
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go func() { readyc <- vm.Ready(readyCtx) }()
	for {
		select {
		case err := <-readyc:
			readyc = nil
			if err != nil {
				fmt.Fprintf(stderr, "endpoint %s: %v\nconsole tail:\n%s\n", cfg.Name, err, vm.Console().Tail(consoleTailN))
				vm.Stop(ctx)
				return &SuperviseError{ExitCodeFailed, err.Error()}
			}
			fmt.Fprintf(stdout, "endpoint %s: ready in %.2fs%s\n", cfg.Name, time.Since(t0).Seconds(), describeForwards(vm))
		case sig := <-o.Stop:
			fmt.Fprintf(stdout, "endpoint %s: %v: stopping\n", cfg.Name, sig)
			cancelReady()
			vm.Stop(ctx)
			return exitFor(vm, cfg.Name, stderr)
		case <-vm.Done():
			return exitFor(vm, cfg.Name, stderr)
		case <-ctx.Done():
			vm.Stop(context.Background())
			return exitFor(vm, cfg.Name, stderr)
		}
	}
}

func describeForwards(vm *VM) string {
	var parts []string
	for _, f := range vm.Forwards() {
		parts = append(parts, fmt.Sprintf("%s:%d->%d/%s", vm.ManagementAddr(), f.HostPort, f.GuestPort, f.Proto))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// exitFor maps how QEMU ended to the exit status, printing the console
// tail when it was not a clean poweroff.
func exitFor(vm *VM, name string, stderr io.Writer) error {
	ex, _ := vm.Wait(context.Background())
	msg := fmt.Sprintf("endpoint %s: QEMU ended: %s", name, ex)
	code := map[ExitReason]int{
		ExitPoweredOff: ExitCodeOK, ExitStopped: ExitCodeOK,
		ExitQuit: ExitCodeQuit, ExitKilled: ExitCodeKilled, ExitDied: ExitCodeDied,
	}[ex.Reason]
	if code == ExitCodeOK {
		fmt.Fprintln(stderr, msg)
		return nil
	}
	fmt.Fprintf(stderr, "%s\nconsole tail:\n%s\n", msg, vm.Console().Tail(consoleTailN))
	if ex.Stderr != "" {
		fmt.Fprintf(stderr, "QEMU stderr:\n%s\n", ex.Stderr)
	}
	return &SuperviseError{code, msg}
}

// runningVM is vm while QEMU runs, else nil (the control socket answers
// ErrBusy).
func runningVM(vm *VM) nicChanger {
	select {
	case <-vm.Done():
		return nil
	default:
		return vm
	}
}
