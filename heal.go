package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// HealInterval is how often Heal looks at every endpoint.
const HealInterval = 250 * time.Millisecond

// HealerCommand is the launcher's subcommand that runs Heal for an
// instance directory (`endpoint heal --dir DIR`).
const HealerCommand = "heal"

// healerLog, in the state directory, holds the healer's output.
const healerLog = "heal.log"

// Heal keeps the instance whose state directory is dir as Up left it, with
// no lesson command running, until ctx ends or the instance is removed.
// Every HealInterval it observes each endpoint through the runtime and:
//
//   - when the endpoint's namespace is gone, or its launcher ended (killed,
//     or it could not start the VM again) while the instance's policy
//     restarts it, restarts it through the runtime (Runtime.Restart: the
//     namespace and links repaired, a new launcher), with a backoff of
//     none, 1 s, 2 s … 30 s and at most qemulaunch.DefaultMaxRestarts in
//     a row;
//   - when interfaces of the endpoint are missing (a link's veth deleted),
//     repairs the wiring (Runtime.Repair); the launchers stitch their VMs
//     to the recreated interfaces;
//   - when the endpoint's VM booted again (its launcher restarted it in
//     place, or the runtime placed it anew) and is ready, configures the
//     instance's current stage on it, and records its restarts and how
//     it last ended.
//
// A VM that merely ended is restarted by its launcher (qemulaunch.Supervise);
// Heal covers what a launcher cannot: its own death, a lost namespace or
// link, and the lesson's configuration. Up starts it on this machine as a
// process of its own (`endpoint heal`, see startHealer) unless the policy is
// never; Teardown stops it first. A program that places instances through
// another runtime runs Heal itself.
func Heal(ctx context.Context, dir string, opts Options) error {
	log := opts.log().With("instance", filepath.Base(dir))
	h := &healer{dir: dir, opts: opts, tracks: map[string]*healTrack{}}
	defer h.wg.Wait()
	tick := time.NewTicker(HealInterval)
	defer tick.Stop()
	for {
		inst, err := Open(dir, opts)
		if errors.Is(err, ErrNoInstance) {
			log.Info("instance removed: healer ends")
			return nil
		}
		if err == nil && !inst.Placing {
			h.round(ctx, inst)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// healer is Heal's state between rounds.
type healer struct {
	dir    string
	opts   Options
	mu     sync.Mutex
	tracks map[string]*healTrack // by endpoint
	wg     sync.WaitGroup
}

// healTrack is one endpoint's restarts by the healer.
type healTrack struct {
	busy    bool      // an action runs
	inRow   int       // runtime restarts in a row
	next    time.Time // no restart before
	readyAt time.Time // when its current boot was seen ready
}

// round observes every endpoint once and starts what each needs.
func (h *healer) round(ctx context.Context, inst *Instance) {
	for _, e := range inst.Endpoints {
		h.mu.Lock()
		t := h.tracks[e.Name]
		if t == nil {
			t = &healTrack{}
			h.tracks[e.Name] = t
		}
		busy := t.busy
		h.mu.Unlock()
		if busy {
			continue
		}
		o := inst.runtime().Observe(ctx, e)
		act, wiring := h.decide(ctx, inst, e, o, t)
		if act == nil {
			continue
		}
		if wiring {
			// One wiring change at a time, and the next endpoint observed
			// after it (a deleted veth is missing at both ends).
			if err := act(); err != nil && ctx.Err() == nil {
				inst.opts.log().Error("heal", "endpoint", e.Name, "err", err)
			}
			continue
		}
		h.mu.Lock()
		t.busy = true
		h.mu.Unlock()
		h.wg.Go(func() {
			defer func() { h.mu.Lock(); t.busy = false; h.mu.Unlock() }()
			if err := act(); err != nil && ctx.Err() == nil {
				inst.opts.log().Error("heal", "endpoint", e.Name, "err", err)
			}
		})
	}
}

// decide returns what endpoint e needs now, or nil, and whether it changes
// the wiring (such actions run one at a time).
func (h *healer) decide(ctx context.Context, inst *Instance, e RunningEndpoint, o Observation, t *healTrack) (func() error, bool) {
	gone := !o.Running && o.Health != qemulaunch.HealthFailed && o.Health != qemulaunch.HealthStopped && o.Health != qemulaunch.HealthStopping
	switch {
	case inst.Restart == qemulaunch.RestartNever:
		return nil, false
	case o.NamespaceGone || gone:
		if !t.readyAt.IsZero() && time.Since(t.readyAt) > qemulaunch.StableAfter {
			t.inRow = 0
		}
		if t.inRow >= qemulaunch.DefaultMaxRestarts {
			if e.State == StateFailed {
				return nil, false
			}
			msg := fmt.Sprintf("gave up after %d restarts in a row; last: %s; `lesson restart %s` tries again", t.inRow, firstNonEmpty(o.Wiring, e.LastExit), e.Name)
			return func() error {
				return inst.update(e.Name, func(r *RunningEndpoint) { r.State, r.Error = StateFailed, msg })
			}, false
		}
		if time.Now().Before(t.next) {
			return nil, false
		}
		why := o.Wiring
		if !o.NamespaceGone {
			why = "launcher ended"
			if o.Health != "" {
				why += " (last health: " + o.Health + ")"
			}
		}
		t.inRow++
		t.next = time.Now().Add(min(time.Second<<max(t.inRow-1, 0), 30*time.Second))
		return func() error { return inst.replace(ctx, e, why, false) }, true
	case o.Wiring != "":
		return func() error { return inst.repair(ctx, o.Wiring) }, true
	case !o.Running && o.Health == qemulaunch.HealthFailed && e.State != StateFailed:
		return func() error {
			return inst.update(e.Name, func(r *RunningEndpoint) { r.State, r.Error = StateFailed, o.Detail })
		}, false
	case o.Running && o.Boot != e.BootID && e.BootID != "":
		if o.Health != qemulaunch.HealthReady {
			if e.State == StateRestarting {
				return nil, false
			}
			return func() error {
				return inst.update(e.Name, func(r *RunningEndpoint) {
					r.State, r.Error = StateRestarting, o.Detail
					r.Restarts, r.LastExit = o.Restarts+r.Replaced, firstNonEmpty(o.LastExit, r.LastExit)
				})
			}, false
		}
		t.readyAt = time.Now()
		return func() error { return inst.reconfigure(ctx, e.Name, o) }, false
	}
	return nil, false
}

// replace has the runtime place endpoint e anew.
func (i *Instance) replace(ctx context.Context, e RunningEndpoint, why string, reset bool) error {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	rep.report(StepRestart, e.Name, fmt.Sprintf("%s: %s: starting it again", e.Name, why), nil)
	if err := i.update(e.Name, func(r *RunningEndpoint) {
		r.State, r.Error, r.Replaced, r.LastExit = StateRestarting, why, r.Replaced+1, why
		r.Restarts++
	}); err != nil {
		return err
	}
	p, err := i.placementNow(rep)
	if err != nil {
		return err
	}
	if err := i.runtime().Restart(ctx, p, e, reset); err != nil {
		_ = i.update(e.Name, func(r *RunningEndpoint) { r.State, r.Error = StateFailed, text.FirstLine(err.Error()) })
		return err
	}
	return nil
}

// repair has the runtime recreate missing namespaces and links.
func (i *Instance) repair(ctx context.Context, why string) error {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	rep.report(StepWire, "", "repairing: "+why, nil)
	p, err := i.placementNow(rep)
	if err != nil {
		return err
	}
	return i.runtime().Repair(ctx, p)
}

// reconfigure applies the instance's current stage (and brings up the
// links added to the running instance) on an endpoint whose VM
// booted again (boot o.Boot), and records the boot.
func (i *Instance) reconfigure(ctx context.Context, name string, o Observation) error {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	err := i.update(name, func(r *RunningEndpoint) {
		r.State, r.Error, r.BootID = StateReady, "", o.Boot
		r.Restarts, r.LastExit = o.Restarts+r.Replaced, firstNonEmpty(o.LastExit, r.LastExit)
	})
	if err != nil || (i.Stage < 0 && len(i.Links.Added) == 0) {
		return err
	}
	_, m, images, err := i.model()
	if err != nil {
		return err
	}
	ep := m.Endpoint(name)
	rec, _ := i.Endpoint(name)
	if ep == nil {
		return fmt.Errorf("endpoint %s is no longer in the lesson", name)
	}
	if err := i.writeKnownHosts(ctx, images); err != nil { // a fresh disk may bring new keys
		return err
	}
	if i.Stage >= 0 {
		i.configure(ctx, i.Stage, []configTarget{{*ep, rec, images[rec.Image]}}, rep)
	}
	return i.restoreAddedLinks(ctx, *ep, rec, images[rec.Image])
}

// placementNow is the instance's Placement rebuilt from its record and
// lesson (the model, images and wiring plan are derived again; the wiring
// state keeps the management subnet).
func (i *Instance) placementNow(rep reporter) (*Placement, error) {
	l, m, images, err := i.model()
	if err != nil {
		return nil, err
	}
	plan, err := planWiring(m, i.Name)
	if err != nil {
		return nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	return i.placement(&prepared{name: i.Name, lesson: l, model: m, images: images, plan: plan, accel: i.Accel, rt: i.runtime()}, rep), nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// startHealer starts `endpoint heal --dir DIR` for the instance in its own
// session, its output in DIR/heal.log, and returns its pid.
func startHealer(dir string, opts Options) (int, error) {
	bin, err := FindLauncher(opts.Launcher)
	if err != nil {
		return 0, err
	}
	logf, err := os.OpenFile(filepath.Join(dir, healerLog), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return 0, err
	}
	defer logf.Close()
	cmd := exec.Command(bin, HealerCommand, "--dir="+dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("instance %s: start its healer: %w", filepath.Base(dir), err)
	}
	go func() { _ = cmd.Wait() }() // reaps it should it end while this process runs
	return cmd.Process.Pid, nil
}

// HealerProcesses lists the pids of the healers of the instance whose
// state directory is dir (`… heal --dir=DIR`), found in /proc.
func HealerProcesses(dir string) []int {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	want := "--dir=" + filepath.Clean(dir)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) == 3 && args[1] == HealerCommand && args[2] == want {
			pids = append(pids, pid)
		}
	}
	return pids
}

// stopHealers stops the instance's healers (SIGTERM, then SIGKILL after
// 3 s) and waits until they are gone, so that nothing restarts an
// endpoint while Teardown removes it.
func stopHealers(dir string) {
	pids := HealerProcesses(dir)
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGTERM)
	}
	start, killed := time.Now(), false
	for len(pids) > 0 && time.Since(start) < 13*time.Second {
		if pids = HealerProcesses(dir); !killed && time.Since(start) > 3*time.Second {
			for _, pid := range pids {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
			killed = true
		}
		time.Sleep(20 * time.Millisecond)
	}
}
