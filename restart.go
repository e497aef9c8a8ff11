package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
)

// RestartEndpoint starts an endpoint's VM again on demand (`lesson restart
// EP`), with a fresh overlay — its disk as the image has it — when reset:
// in place by its launcher when that runs (its links untouched), else
// placed anew through the runtime. It returns once the VM booted again
// and the instance's current stage is configured on it (by the instance's
// healer when one runs, else here); a configuration failure is a
// *ConfigureError.
func (i *Instance) RestartEndpoint(ctx context.Context, name string, reset bool) error {
	i.reload()
	rec, ok := i.Endpoint(name)
	if !ok {
		return fmt.Errorf("instance %s: no endpoint %q (endpoints: %s)", i.Name, name, i.endpointNames())
	}
	if err := i.notAbandoned(); err != nil {
		return err
	}
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	o := i.runtime().Observe(ctx, rec)
	if o.Running && !o.NamespaceGone {
		rep.report(StepRestart, name, fmt.Sprintf("%s: restarting in place", name), nil)
		p, err := i.placementNow(rep)
		if err != nil {
			return err
		}
		if err := i.runtime().Restart(ctx, p, rec, reset); err != nil {
			return err
		}
	} else if err := i.replace(ctx, rec, "restart requested", reset); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, i.opts.readyTimeout())
	defer cancel()
	// Wait for a new boot to be ready.
	var now Observation
	for {
		fresh, err := Open(i.Dir, i.opts)
		if err != nil {
			return err
		}
		rec, _ = fresh.Endpoint(name)
		now = i.runtime().Observe(ctx, rec)
		if now.Boot != o.Boot && now.Running && now.Health == qemulaunch.HealthReady {
			break
		}
		if !now.Running && (now.Health == qemulaunch.HealthFailed || rec.State == StateFailed) {
			return i.bootError(rec, "did not come back: "+firstNonEmpty(now.Detail, rec.Error))
		}
		select {
		case <-ctx.Done():
			return i.bootError(rec, fmt.Sprintf("not ready again after %v", i.opts.readyTimeout()))
		case <-time.After(100 * time.Millisecond):
		}
	}
	rep.report(StepReady, name, fmt.Sprintf("%s ready again", name), nil)
	if healerAlive(i) {
		return i.awaitHealer(ctx, name, now.Boot)
	}
	return i.reconfigureResult(ctx, name, now)
}

// awaitHealer waits until the healer has configured boot of the endpoint.
func (i *Instance) awaitHealer(ctx context.Context, name, boot string) error {
	for {
		fresh, err := Open(i.Dir, i.opts)
		if err != nil {
			return err
		}
		i.adoptRecord(fresh)
		rec, _ := i.Endpoint(name)
		if rec.BootID == boot {
			switch rec.State {
			case StateConfigured, StateReady:
				if rec.State == StateConfigured || i.Stage < 0 {
					return nil
				}
			case StateConfigFailed:
				return fmt.Errorf("%w: stage %d on %s: %s", ErrConfigure, i.Stage, name, rec.Error)
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("endpoint %s: the healer did not configure stage %d in time: %w", name, i.Stage, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// reconfigureResult configures the current stage on the endpoint's new
// boot here, and returns the outcome.
func (i *Instance) reconfigureResult(ctx context.Context, name string, o Observation) error {
	if err := i.reconfigure(ctx, name, o); err != nil {
		return err
	}
	if rec, _ := i.Endpoint(name); rec.State == StateConfigFailed {
		return fmt.Errorf("%w: stage %d on %s: %s", ErrConfigure, i.Stage, name, rec.Error)
	}
	return nil
}

// adoptRecord takes the record of o (read again from disk) as i's.
func (i *Instance) adoptRecord(o *Instance) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.adopt(o)
}

// HealerRunning reports whether the instance's healer (see Heal) runs on
// this machine.
func (i *Instance) HealerRunning() bool { return healerAlive(i) }

// healerAlive reports whether the instance's healer process runs.
func healerAlive(i *Instance) bool {
	return i.HealerPID > 0 && syscall.Kill(i.HealerPID, 0) == nil && len(HealerProcesses(i.Dir)) > 0
}

// Abandoned reports whether the instance's Up ended before it finished
// (its process was killed mid-way): such an instance is only good for
// Teardown.
func (i *Instance) Abandoned() bool {
	return i.Placing && i.UpPID > 0 && !pidIsUp(i.UpPID)
}

// notAbandoned is an ErrAbandoned error saying how to remove an abandoned
// instance, or nil.
func (i *Instance) notAbandoned() error {
	if !i.Abandoned() {
		return nil
	}
	return fmt.Errorf("instance %s: %w (pid %d ended before the instance was up): remove it with `lesson down --instance %s` (Teardown)", i.Name, ErrAbandoned, i.UpPID, i.Name)
}

// ready is nil when the endpoint's VM runs and answers, else an
// ErrNotRunning error naming its state and what to do — at once, rather
// than after a reachability deadline.
func (i *Instance) ready(ctx context.Context, rec RunningEndpoint) error {
	if err := i.notAbandoned(); err != nil {
		return err
	}
	o := i.runtime().Observe(ctx, rec)
	if o.Running && o.Health == qemulaunch.HealthReady && !o.NamespaceGone {
		return nil
	}
	state := "down: its launcher is not running"
	if o.Health != "" {
		state += " (last health: " + o.Health
		if o.Detail != "" {
			state += ": " + o.Detail
		}
		state += ")"
	}
	todo := fmt.Sprintf("`lesson restart %s` starts it again", rec.Name)
	switch {
	case o.NamespaceGone:
		state, todo = "down: "+o.Wiring, "the instance's healer places it again; else `lesson restart "+rec.Name+"`"
	case o.Running && (o.Health == qemulaunch.HealthRestarting || (o.Health == qemulaunch.HealthStarting && rec.BootID != "")):
		state, todo = "restarting", "wait until `lesson status` shows it ready"
		if o.Detail != "" {
			state += " (" + o.Detail + ")"
		}
	case o.Running && (o.Health == qemulaunch.HealthStarting || o.Health == ""):
		state, todo = "still starting", "wait until `lesson status` shows it ready"
	case o.Running:
		state, todo = o.Health, "see `lesson status`"
	case healerAlive(i) && o.Health != qemulaunch.HealthFailed:
		todo = "the instance's healer is starting it again"
	}
	return fmt.Errorf("%w: endpoint %s is %s; %s", ErrNotRunning, rec.Name, state, todo)
}

// pidIsUp reports whether pid still looks like the process that ran Up
// (not a reused pid of a zombie).
func pidIsUp(pid int) bool {
	return !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) && !qemulaunch.Zombie(pid)
}
