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

	"github.com/endpointkit/endpointkit/internal/text"
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

// SuperviseOptions are where [Supervise] reports, what stops or restarts
// it and when it restarts the VM by itself.
type SuperviseOptions struct {
	// Stdout gets one line per milestone (QEMU started, ready with the
	// forwards, stopping, restarting); Stderr how QEMU ended and, when it
	// was not a clean poweroff, the console tail. nil discards.
	Stdout, Stderr io.Writer
	// Stop delivers the signals that ask for a graceful stop (`endpoint
	// run` passes SIGTERM and SIGINT): one during start-up aborts it, one
	// later powers the guest off (Config.Timeouts.StopGrace, then quit,
	// then kill).
	Stop <-chan os.Signal
	// Restart delivers requests to restart the VM now (`endpoint run`:
	// SIGUSR1, SIGUSR2 with a fresh overlay): the guest is powered off
	// gracefully and started again in place.
	Restart <-chan RestartRequest
	// Policy says when a VM that ended unasked is started again ("" is
	// RestartOnFailure); MaxRestarts bounds the restarts in a row (0 is
	// DefaultMaxRestarts).
	Policy      RestartPolicy
	MaxRestarts int
	// KeepState keeps the state directory when the launcher ends cleanly
	// (by default it is removed then; after a failure it stays, with the
	// console log and the health that say why).
	KeepState bool
}

// Supervise is the launcher's whole life for one VM: [Start], [VM.Ready]
// (reported, not awaited: the VM runs on while it waits), then run until
// a signal on o.Stop asks for a graceful stop or ctx ends (also a
// graceful stop), the guest powers off, or QEMU ends.
//
// A VM that ends without being asked is started again in place, as
// o.Policy says, after a backoff (none before the first restart in a
// row, then 1 s doubling to 30 s), at most o.MaxRestarts times in a row:
// the namespace, its interfaces and so the links to the peers stay as
// they are; the TAPs are stitched again and the guest boots on the
// overlay it wrote. A request on o.Restart does the same at once (with a
// fresh overlay if asked). Each restart is recorded in the state
// directory ([ReadRestarts]) and the health file says "restarting"
// meanwhile.
//
// It returns nil when the guest powered off or stopped as asked;
// otherwise an error for [ExitCode] — a *SuperviseError for readiness
// failures and unclean ends.
func Supervise(ctx context.Context, cfg Config, o SuperviseOptions) error {
	if o.Stdout == nil {
		o.Stdout = io.Discard
	}
	if o.Stderr == nil {
		o.Stderr = io.Discard
	}
	policy := o.Policy.orDefault()
	maxRestarts := o.MaxRestarts
	if maxRestarts <= 0 {
		maxRestarts = DefaultMaxRestarts
	}
	keepOverlay := cfg.KeepOverlay
	cfg.KeepOverlay = true // across restarts; removed at the end
	dir := StateDir(cfg.withDefaults().StateDir)
	bo := newRestartBackoff()
	rec, _ := ReadRestarts(dir) // a launcher started again in the same place counts on
	live := &liveNICs{dir: dir, log: cfg.Logger}
	err := func() error {
		for {
			if ifs := live.interfaces(); ifs != nil { // NICs added or removed at run time stay so
				cfg.Interfaces, cfg.DataInterfaces = ifs, 0
			}
			r := superviseOnce(ctx, cfg, o, live)
			switch {
			case r.requested != nil:
				cfg.reuseOverlay = !r.requested.Reset
				if r.requested.Reset {
					os.Remove(dir.Overlay())
				}
				rec = Restarts{Count: rec.Count + 1, LastExit: "restart requested", At: time.Now().UTC()}
				writeRestarts(dir, rec)
				fmt.Fprintf(o.Stdout, "endpoint %s: restarting on request (restart %d%s)\n", cfg.Name, rec.Count, map[bool]string{true: ", fresh overlay"}[r.requested.Reset])
				continue
			case r.stopped, !restartable(policy, r):
				return r.err
			}
			if r.stable {
				bo.reset()
			}
			if bo.inRow >= maxRestarts {
				msg := fmt.Sprintf("gave up after %d restarts in a row; last: %s", bo.inRow, r.why)
				writeHealth(dir.Health(), HealthFailed, msg)
				fmt.Fprintf(o.Stderr, "endpoint %s: %s\n", cfg.Name, msg)
				return r.err
			}
			wait := bo.next()
			rec = Restarts{Count: rec.Count + 1, LastExit: r.why, At: time.Now().UTC()}
			writeRestarts(dir, rec)
			writeHealth(dir.Health(), HealthRestarting, fmt.Sprintf("restart %d after %s; next start in %v", rec.Count, r.why, wait.Round(time.Millisecond)))
			fmt.Fprintf(o.Stdout, "endpoint %s: %s; restart %d (%d in a row, at most %d) in %v\n", cfg.Name, r.why, rec.Count, bo.inRow, maxRestarts, wait.Round(time.Millisecond))
			cfg.reuseOverlay = r.ready // a guest that never came up gets a fresh disk
			select {
			case <-time.After(wait):
			case sig := <-o.Stop:
				fmt.Fprintf(o.Stdout, "endpoint %s: %v while waiting to restart: stopping\n", cfg.Name, sig)
				writeHealth(dir.Health(), HealthStopped, "stopped while waiting to restart")
				return nil
			case <-ctx.Done():
				return r.err
			}
		}
	}()
	live.close()
	if !keepOverlay {
		os.Remove(dir.Overlay())
	}
	if err == nil && !o.KeepState {
		removeStateDir(dir, keepOverlay)
	}
	return err
}

// runEnd is how one run of the VM ended.
type runEnd struct {
	err       error
	why       string          // how it ended, for the restart record
	stopped   bool            // on request (signal, ctx): never restarted
	requested *RestartRequest // a restart was asked for
	ready     bool            // the guest had become ready
	stable    bool            // … and stayed ready for StableAfter
	bootFail  bool            // start-up or readiness failed
}

// restartable says whether policy restarts a VM that ended as r says.
func restartable(policy RestartPolicy, r runEnd) bool {
	switch policy {
	case RestartNever:
		return false
	case RestartAlways:
		return true
	}
	return r.ready && !r.bootFail
}

// superviseOnce runs the VM once: start, readiness, until it ends.
func superviseOnce(ctx context.Context, cfg Config, o SuperviseOptions, live *liveNICs) runEnd {
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	stopped, watched := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watched)
		select {
		case <-o.Stop: // a signal during start-up aborts it
			close(stopped)
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	t0 := time.Now()
	vm, err := Start(startCtx, cfg)
	cancelStart()
	<-watched // a signal that came meanwhile is in stopped now
	if err != nil {
		select {
		case <-stopped:
			return runEnd{err: err, stopped: true}
		default:
		}
		return runEnd{err: err, why: "start-up: " + text.FirstLine(err.Error()), bootFail: true, stopped: ctx.Err() != nil}
	}
	select {
	case <-stopped: // the signal came as Start returned
		vm.Stop(ctx)
		return runEnd{err: exitFor(vm, cfg.Name, o.Stderr), stopped: true}
	default:
	}
	fmt.Fprintf(o.Stdout, "endpoint %s: QEMU started (pid %d, %s)\n", cfg.Name, vm.PID(), vm.Plan().Accel)
	live.serve(vm, cfg.Name, o.Stderr)
	readyc := make(chan error, 1)
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go func() { readyc <- vm.Ready(readyCtx) }()
	var readyAt time.Time
	ended := func(r runEnd) runEnd {
		r.ready = !readyAt.IsZero()
		r.stable = r.ready && time.Since(readyAt) >= StableAfter
		return r
	}
	for {
		select {
		case err := <-readyc:
			readyc = nil
			if err != nil {
				fmt.Fprintf(o.Stderr, "endpoint %s: %v\nconsole tail:\n%s\n", cfg.Name, err, vm.Console().Tail(consoleTailN))
				vm.Stop(ctx)
				return ended(runEnd{err: &SuperviseError{ExitCodeFailed, err.Error()}, why: "readiness: " + text.FirstLine(err.Error()), bootFail: true, stopped: ctx.Err() != nil})
			}
			readyAt = time.Now()
			fmt.Fprintf(o.Stdout, "endpoint %s: ready in %.2fs%s\n", cfg.Name, time.Since(t0).Seconds(), describeForwards(vm))
		case sig := <-o.Stop:
			fmt.Fprintf(o.Stdout, "endpoint %s: %v: stopping\n", cfg.Name, sig)
			cancelReady()
			vm.Stop(ctx)
			return ended(runEnd{err: exitFor(vm, cfg.Name, o.Stderr), stopped: true})
		case req := <-o.Restart:
			fmt.Fprintf(o.Stdout, "endpoint %s: restart requested: stopping the guest\n", cfg.Name)
			cancelReady()
			vm.Stop(ctx)
			exitFor(vm, cfg.Name, o.Stderr)
			return ended(runEnd{requested: &req})
		case <-vm.Done():
			ex, _ := vm.Wait(context.Background())
			return ended(runEnd{err: exitFor(vm, cfg.Name, o.Stderr), why: ex.String()})
		case <-ctx.Done():
			vm.Stop(context.Background())
			return ended(runEnd{err: exitFor(vm, cfg.Name, o.Stderr), stopped: true})
		}
	}
}

// removeStateDir removes what a launcher keeps in its state directory
// (the overlay unless kept), then the directory if that left it empty (a
// directory given with --state that holds other files stays).
func removeStateDir(dir StateDir, keepOverlay bool) {
	if !keepOverlay {
		os.Remove(dir.Overlay())
	}
	for _, f := range []string{dir.Health(), dir.Restarts(), dir.HostKeys(), dir.ConsoleLog(), dir.ConsoleLog() + ".1",
		dir.LauncherPID(), dir.QEMUPID(), dir.Argv(), dir.QMPSocket(), dir.ConsoleSocket(), dir.Health() + ".tmp",
		dir.join("identity.json"), dir.join("identity.fwcfg")} { // a per-instance identity (images with one)
		os.Remove(f)
	}
	os.Remove(string(dir))
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
