package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
)

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
// directory deleted. Through the runtime (Options.Runtime; locally) it
//
//  1. stops the instance's healer (see Heal), then every process of the
//     instance — the launchers and QEMU whose
//     state lies in the directory (qemulaunch.StopProcesses) — with
//     SIGTERM to the launchers (a graceful guest poweroff, bounded by the
//     grace they were started with), then SIGKILL to whatever is left when
//     ctx ends or the grace has passed;
//  2. removes the wiring: what wiring.json records, then any namespace or
//     host link still named after the instance (wiring.Local.Remove);
//
// — or, for an instance whose record names another runtime (a cluster,
// see Options.RuntimeFor), has that runtime remove it —
// then deletes the state directory. It is idempotent. The instance name is
// the directory's base name.
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
	if errors.Is(err, ErrRuntime) {
		return err // removing it locally would leave it running where it is
	}
	rt := opts.runtime()
	if err == nil {
		rt = inst.runtime()
	}
	if err == nil && inst.Accel != "" {
		grace *= time.Duration(inst.Accel.SlowDown())
	} else {
		grace *= qemulaunch.TCGSlowDown // unknown: assume the slow case
	}
	if graceful {
		grace += 5 * time.Second // the launcher's own clean-up after QEMU
	} else {
		grace = 0
	}
	stopHealers(dir) // nothing may start an endpoint again meanwhile
	var errs []error
	stopped := watchStops(ctx, rt, inst, rep)
	err = rt.Remove(ctx, dir, grace)
	stopped(err == nil)
	if err != nil {
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
