package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
	"github.com/vishvananda/netlink"
)

// killWait bounds how long Teardown waits for killed processes to go.
const killWait = 10 * time.Second

// Down removes the instance: it stops every endpoint (the guests get
// Options.StopGrace to power off, then QEMU is quit or killed), removes
// the namespaces and links, and deletes the state directory. See
// Teardown, which it calls.
func (i *Instance) Down(ctx context.Context) error {
	err := Teardown(ctx, i.Dir, i.opts)
	for k := range i.Endpoints {
		i.Endpoints[k].State = StateDown
	}
	return err
}

// Teardown removes everything an instance's state directory records, and
// works from the directory alone: after a crash of the process that ran
// Up, with launchers or QEMU killed, with the instance record or the whole
// directory deleted. It
//
//  1. stops every process of the instance — found by the state directory
//     in its command line (launchers: --state DIR/EP; QEMU: its sockets
//     there) — with SIGTERM to the launchers (a graceful guest poweroff,
//     bounded by the grace they were started with), then SIGKILL to
//     whatever is left when ctx ends or the grace has passed;
//  2. removes the wiring (package wiring's state file), then any namespace
//     still named after the instance (ek-NAME, ek-NAME.*, ek-NAME@*);
//  3. deletes the state directory.
//
// It is idempotent. The instance name is the directory's base name.
func Teardown(ctx context.Context, dir string, opts Options) error {
	return teardown(ctx, dir, opts, true)
}

// teardown is Teardown; graceful false kills the processes at once (after
// a failed or cancelled Up there is nothing in the guests worth a
// poweroff, and a guest still booting would ignore it).
func teardown(ctx context.Context, dir string, opts Options, graceful bool) error {
	rep := reporter{fn: opts.Progress, start: time.Now()}
	log := opts.log()
	dir, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	name := filepath.Base(dir)
	if err := wiring.ValidInstance(name); err != nil {
		return fmt.Errorf("teardown %s: not an instance directory: %w", dir, err)
	}
	rep.report(StepTeardown, "", "removing instance "+name, nil)
	grace := opts.stopGrace()
	inst, err := Open(dir, opts)
	if err == nil && inst.Accel != "" {
		grace *= time.Duration(scaleFor(inst.Accel))
	} else {
		grace *= tcgScale // unknown: assume the slow case
	}
	if !graceful {
		grace = 0
	}
	var errs []error
	if graceful {
		grace += 5 * time.Second // the launcher's own clean-up after QEMU
	}
	sp := &stopProgress{rep: rep}
	if inst != nil {
		sp.names = inst.endpointNameList()
	}
	if err := stopProcesses(ctx, dir, grace, sp); err != nil {
		errs = append(errs, err)
	}
	local := &wiring.Local{StateRoot: filepath.Dir(dir), Logger: log}
	if err := local.Teardown(ctx, dir); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
	}
	if err := removeLeftovers(name); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	rep.report(StepDone, "", "instance "+name+" removed", nil)
	log.Info("instance removed", "instance", name)
	return nil
}

// instanceProcess is a process belonging to an instance.
type instanceProcess struct {
	pid      int
	launcher bool   // an `endpoint run` (else QEMU or another helper)
	endpoint string // the endpoint whose state directory it names
}

// processesOf lists the processes whose command line names a path inside
// dir: launchers (--state DIR/EP) and QEMU (sockets in DIR/EP).
func processesOf(dir string) []instanceProcess {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	marker := dir + "/"
	self := os.Getpid()
	var out []instanceProcess
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || !strings.Contains(string(raw), marker) {
			continue
		}
		launcher := args[1] == "run" && hasStateArg(args, marker)
		if launcher || strings.Contains(filepath.Base(args[0]), "qemu-system") {
			out = append(out, instanceProcess{pid: pid, launcher: launcher, endpoint: endpointIn(string(raw), marker)})
		}
	}
	return out
}

// hasStateArg reports whether args carry --state with a path under marker.
func hasStateArg(args []string, marker string) bool {
	for k, a := range args {
		if (a == "--state" || a == "-state") && k+1 < len(args) && strings.HasPrefix(args[k+1], marker) {
			return true
		}
		if v, ok := strings.CutPrefix(a, "--state="); ok && strings.HasPrefix(v, marker) {
			return true
		}
	}
	return false
}

// stopProcesses asks every launcher of the instance to stop, waits up to
// grace (or ctx), then kills what is left and waits for it to go. A zero
// grace kills at once.
func stopProcesses(ctx context.Context, dir string, grace time.Duration, sp *stopProgress) error {
	procs := processesOf(dir)
	sp.begin(procs)
	if len(procs) == 0 {
		return nil
	}
	if grace > 0 {
		for _, p := range procs {
			if p.launcher {
				_ = syscall.Kill(p.pid, syscall.SIGTERM)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		if waitGone(gctx, dir, sp) {
			return nil
		}
	}
	for _, p := range processesOf(dir) {
		_ = syscall.Kill(p.pid, syscall.SIGKILL)
	}
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer kcancel()
	if !waitGone(kctx, dir, sp) {
		return fmt.Errorf("instance %s: processes still running after SIGKILL: %v", filepath.Base(dir), processesOf(dir))
	}
	return nil
}

// waitGone polls until no process of the instance is left or ctx ends.
func waitGone(ctx context.Context, dir string, sp *stopProgress) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		live := processesOf(dir)
		sp.observe(live)
		if len(live) == 0 || allZombies(live) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// allZombies reports whether every process has exited and only awaits its
// parent's wait (our own children are reaped by Up's goroutines).
func allZombies(ps []instanceProcess) bool {
	for _, p := range ps {
		if !zombie(p.pid) {
			return false
		}
	}
	return true
}

// removeLeftovers removes what the wiring state did not account for (its
// state file was lost): the namespaces named after the instance and its
// host link. (Deleting the fabric namespace destroys the host link too, but
// in the kernel's background cleanup, after Teardown would have returned.)
func removeLeftovers(instance string) error {
	var errs []error
	if plan, err := wiring.NewPlan(&endpoint.Model{}, wiring.Options{Instance: instance}); err == nil {
		if lk, err := netlink.LinkByName(plan.HostLink); err == nil && lk.Type() == "veth" {
			if err := netlink.LinkDel(lk); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: delete host link %s: %w", instance, plan.HostLink, err))
			}
		}
	}
	ents, err := os.ReadDir(nsutil.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return errors.Join(errs...)
	}
	if err != nil {
		return err
	}
	fabric := wiring.NamePrefix + instance
	for _, e := range ents {
		n := e.Name()
		if n == fabric || strings.HasPrefix(n, fabric+".") || strings.HasPrefix(n, fabric+"@") {
			if err := nsutil.Delete(n); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: %w", instance, err))
			}
		}
	}
	return errors.Join(errs...)
}

// scaleFor is the factor guest-speed deadlines get under accel.
func scaleFor(accel qemulaunch.Accel) int {
	if accel == qemulaunch.AccelTCG {
		return tcgScale
	}
	return 1
}
