package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
	"github.com/google/renameio/v2"
	"golang.org/x/sync/errgroup"
)

// cleanupTimeout bounds the teardown after a failed or cancelled Up.
const cleanupTimeout = 3 * time.Minute

// Up launches the lesson in lessonDir and returns it running: validate the
// lesson → resolve (or build) every image → plan the endpoints and their
// wiring → have the runtime (Options.Runtime; by default this machine)
// place them: the namespaces and links, and every endpoint's launcher
// (`endpoint run`, in the endpoint's namespace, in its own session, output
// in the state directory) → wait until each is ready → configure
// opts.Stage on each as soon as it is ready. Endpoints boot in parallel.
//
// Nothing starts before the lesson, every image and the launcher are
// known to be usable. When an endpoint does not become ready, or ctx ends
// (Ctrl-C), Up removes everything it created and returns the error (a
// *BootError names the endpoint and quotes its console). When only the
// configuration fails on some endpoints, the lesson stays up: Up returns
// the Instance and a *ConfigureError naming them (their State is
// StateConfigFailed); call Configure again or Down.
//
// ctx bounds Up only: the instance runs until Down.
func Up(ctx context.Context, lessonDir string, opts Options) (*Instance, error) {
	rep := reporter{fn: opts.Progress, start: time.Now()}
	log := opts.log()
	p, err := prepare(ctx, lessonDir, &opts, rep, true)
	if err != nil {
		return nil, err
	}
	dir := InstanceDir(opts.stateRoot(), p.name)
	if err := claim(ctx, dir, opts); err != nil {
		return nil, err
	}
	inst := newInstance(p, dir, opts)
	if err := os.MkdirAll(opts.stateRoot(), 0o755); err != nil {
		return nil, err
	}
	// Mkdir is the claim: of two Ups of one instance, one gets it.
	if err := os.Mkdir(dir, 0o755); errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("instance %s (%s): %w (started by another process just now)", p.name, dir, ErrInstanceExists)
	} else if err != nil {
		return nil, fmt.Errorf("instance %s: %w", p.name, err)
	}
	// From the first file on, a failure removes everything (but what
	// KeepOnFailure keeps of a failure that is not a cancellation).
	keep := false
	defer func() {
		if keep || (opts.KeepOnFailure && ctx.Err() == nil) {
			if !keep {
				log.Info("up failed; instance kept (KeepOnFailure): remove it with Teardown", "instance", p.name, "dir", dir)
			}
			return
		}
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if err := teardown(cctx, dir, opts, false); err != nil {
			log.Error("cleanup after a failed up", "instance", p.name, "err", err)
		}
	}()
	if err := inst.save(); err != nil {
		return nil, err
	}
	if err := p.rt.Place(ctx, inst.placement(p, rep)); err != nil {
		return nil, err
	}
	if err := inst.reachable(ctx, p); err != nil {
		return nil, err
	}
	err = inst.readyAndConfigure(ctx, p, rep)
	var cerr *ConfigureError
	if err != nil && (!errors.As(err, &cerr) || ctx.Err() != nil) {
		return nil, err
	}
	if err := inst.placed(p.rt); err != nil {
		return nil, err
	}
	keep = true
	if cerr != nil {
		rep.report(StepDone, "", cerr.Error(), nil)
		return inst, err
	}
	rep.report(StepDone, "", fmt.Sprintf("instance %s up", inst.Name), nil)
	return inst, nil
}

// placed ends Up's part: the record stops saying "placing", and on this
// machine the instance's healer starts (unless the policy is never).
func (i *Instance) placed(rt Runtime) error {
	healer := 0
	if _, local := rt.(*localRuntime); local && i.Restart != qemulaunch.RestartNever {
		pid, err := startHealer(i.Dir, i.opts)
		if err != nil {
			return err
		}
		healer = pid
	}
	return i.mutate(func(d *Instance) { d.Placing, d.HealerPID = false, healer })
}

// prepared is everything Up knows before it creates anything.
type prepared struct {
	name   string
	lesson *lessonmeta.Lesson
	model  *endpoint.Model
	images imageMetas
	plan   *wiring.Plan
	accel  qemulaunch.Accel
	rt     Runtime
}

// prepare validates the lesson, resolves every image (building those that
// come from recipes), plans the endpoints and the wiring, resolves the
// accelerator and finds the launcher — all before anything starts. For Up
// (forUp), an instance of the same name is refused (unless Replace) and a
// runtime that can check (Checker) is asked whether it can place it, both
// before any image is built; for Plan the launcher and the accelerator of
// this machine do not matter.
func prepare(ctx context.Context, lessonDir string, opts *Options, rep reporter, forUp bool) (*prepared, error) {
	l, err := lessonmeta.Load(lessonDir, lessonmeta.Options{})
	if err != nil {
		return nil, fmt.Errorf("lesson %s: %w", lessonDir, err)
	}
	p := &prepared{lesson: l, name: opts.Instance, images: imageMetas{}}
	if p.name == "" {
		p.name = l.Slug
	}
	if err := wiring.ValidInstance(p.name); err != nil {
		return nil, err
	}
	if dir := InstanceDir(opts.stateRoot(), p.name); forUp && !opts.Replace {
		if err := claim(ctx, dir, *opts); err != nil {
			return nil, err
		}
	}
	if opts.Stage >= 0 {
		if err := l.CheckStage(opts.Stage); err != nil {
			return nil, err
		}
	}
	rep.report(StepValidate, "", fmt.Sprintf("lesson %s: %d endpoints, %d links, %d stages", l.Slug, len(l.Endpoints), len(l.Connections), len(l.Stages)), nil)
	p.rt = opts.runtime()
	lr, local := p.rt.(*localRuntime)
	local = local && forUp
	if local {
		if lr.launcher, err = FindLauncher(opts.Launcher); err != nil {
			return nil, err
		}
	}
	if c, ok := p.rt.(Checker); ok && forUp {
		if err := c.Check(ctx, p.name, opts.Replace); err != nil {
			return nil, err
		}
	}
	cat := opts.Images
	if root, ok := lessonmeta.FindCurriculumRoot(l.Dir); ok {
		cat.Recipes = append(append([]string{}, cat.Recipes...), filepath.Join(root, "images"))
	}
	// Find every image first: an unknown or unbuildable one fails before
	// any build starts.
	var order []string
	srcs := map[string]ImageSource{}
	for _, e := range l.Endpoints {
		if _, ok := srcs[e.Image]; ok {
			continue
		}
		src, err := cat.Find(e.Image)
		if err != nil {
			field := fmt.Sprintf("endpoints[%d].image", e.Index)
			pos := l.Position(field)
			return nil, fmt.Errorf("%s:%d:%d: %s: endpoint %s: %w", l.File, pos.Line, pos.Column, field, e.Name, err)
		}
		srcs[e.Image] = src
		order = append(order, e.Image)
	}
	for _, slug := range order {
		im, built, err := cat.Resolve(ctx, srcs[slug])
		if err != nil {
			return nil, err
		}
		if err := qemulaunch.CheckImage(ctx, im); err != nil {
			return nil, fmt.Errorf("image %q (%s): %w", slug, im.Dir, err)
		}
		p.images[slug] = im
		how := "found"
		if built {
			how = "built"
		}
		rep.event(Event{Step: StepImage, Image: slug, Message: fmt.Sprintf("image %s %s: %s", slug, how, im.Dir)})
	}
	// The instance seeds the MACs: two instances never collide on one L2.
	if p.model, err = (endpoint.Options{Instance: p.name}).Build(l, p.images); err != nil {
		return nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	if err := checkNICs(l, p.model, p.images); err != nil {
		return nil, err
	}
	if p.plan, err = planWiring(p.model, p.name); err != nil {
		return nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	// The accelerator is this machine's only for the local runtime; on
	// another the launcher resolves it where it runs.
	p.accel = opts.accel()
	if local {
		if p.accel, err = qemulaunch.ResolveAccel(ctx, p.accel, "", opts.log()); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// planWiring plans the instance's namespaces and links.
func planWiring(m *endpoint.Model, instance string) (*wiring.Plan, error) {
	return wiring.NewPlan(m, wiring.Options{Instance: instance})
}

// claim makes sure the instance's state directory is free: an existing
// instance is torn down with Options.Replace, else refused.
func claim(ctx context.Context, dir string, opts Options) error {
	if _, err := os.Stat(dir); errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if !opts.Replace {
		return fmt.Errorf("instance %s (%s): %w; remove it first (`lesson down --instance %s`) or replace it (Options.Replace, `lesson up --replace`)", filepath.Base(dir), dir, ErrInstanceExists, filepath.Base(dir))
	}
	return Teardown(ctx, dir, opts)
}

func newInstance(p *prepared, dir string, opts Options) *Instance {
	inst := &Instance{Name: p.name, Lesson: p.lesson.Slug, LessonDir: p.lesson.Dir, Dir: dir, Accel: p.accel,
		Stage: -1, Created: time.Now().UTC().Truncate(time.Second), opts: opts, rt: p.rt,
		Restart: opts.Restart, Placing: true, UpPID: os.Getpid()}
	if r, ok := p.rt.(Recorded); ok {
		rec := r.RuntimeRecord()
		inst.Runtime = &rec
	}
	for _, ep := range p.model.Endpoints {
		im := p.images[ep.Image]
		var ports []Port
		for _, f := range qemulaunch.ExposedPorts(ep.Ports, im.Manifest) {
			ports = append(ports, Port{Guest: f.GuestPort, Host: f.HostPort, Proto: f.Proto})
		}
		inst.Endpoints = append(inst.Endpoints, RunningEndpoint{
			Name: ep.Name, Image: ep.Image, ImageDir: im.Dir,
			Ports: ports, SSHUser: ep.Credentials.SSHUser,
			State: StateStarting, Stage: -1,
		})
	}
	return inst
}

// placement is what the runtime places: every endpoint with its launch
// (qemulaunch.LaunchFor: name, image, ports, MACs) and the wiring plan.
func (i *Instance) placement(p *prepared, rep reporter) *Placement {
	i.started = map[string]time.Time{}
	pl := &Placement{Instance: i.Name, Dir: i.Dir, Accel: p.accel, Wiring: p.plan, Record: i.update,
		Model: p.model, Stage: i.opts.Stage, LessonDir: i.LessonDir, Replace: i.opts.Replace,
		Report: func(step Step, ep, msg string) {
			if step == StepBoot { // boot time counts from the launcher's start
				i.mu.Lock()
				i.started[ep] = time.Now()
				i.mu.Unlock()
			}
			rep.report(step, ep, msg, nil)
		}}
	grace := i.opts.stopGrace()
	for _, ep := range p.model.Endpoints {
		im := p.images[ep.Image]
		l := qemulaunch.LaunchFor(ep, im)
		l.Lesson, l.Accel, l.Grace, l.Restart = i.LessonDir, p.accel, grace, i.Restart
		pl.Endpoints = append(pl.Endpoints, EndpointLaunch{Endpoint: ep, Image: im, Launch: l})
	}
	return pl
}

// reachable records how this machine reaches each endpoint: the access
// line of each presentation, by the address and port the runtime gives
// for the guest port, and the pinned host keys in known_hosts.
func (i *Instance) reachable(ctx context.Context, p *prepared) error {
	acc, accessor := i.runtime().(Accessor)
	for k, ep := range p.model.Endpoints {
		rec := i.Endpoints[k]
		var prs []Presentation
		for _, pr := range ep.Presentations {
			p := Presentation{Name: pr.Name, Type: string(pr.Type), Port: pr.Port}
			if accessor {
				p.Access = acc.Access(i.Name, rec, p)
				prs = append(prs, p)
				continue
			}
			ap, err := i.runtime().Reach(ctx, rec, pr.Port)
			if err != nil {
				return err
			}
			switch pr.Type {
			case endpoint.PresentationSSH:
				p.Access = sshCommand(rec.SSHUser, ap, filepath.Join(i.Dir, KnownHostsFile))
			case endpoint.PresentationHTTP:
				p.Access = fmt.Sprintf("http://%s/", ap)
			}
			prs = append(prs, p)
		}
		if err := i.update(ep.Name, func(e *RunningEndpoint) { e.Presentations = prs }); err != nil {
			return err
		}
	}
	return i.writeKnownHosts(ctx, p.images)
}

// writeKnownHosts writes every endpoint's pinned SSH host keys to the
// instance's known_hosts, by the address and port the runtime reaches its
// SSH at: its image's, or those its launcher learned from its console
// (qemulaunch.PinnedHostKeys; rewritten once they are known; see
// HostKeyer). A runtime
// that reaches endpoints only for a while (an Accessor) has no address
// that lasts beyond this process to pin keys by: the file stays empty.
func (i *Instance) writeKnownHosts(ctx context.Context, images imageMetas) error {
	var hosts []byte
	_, accessor := i.runtime().(Accessor)
	for _, rec := range i.Endpoints {
		im, ok := images[rec.Image]
		if !ok || accessor {
			continue
		}
		ap, err := i.runtime().Reach(ctx, rec, sshGuestPort(im.Manifest))
		if err != nil {
			return err
		}
		// The image's keys, or this instance's own identity's (made in its
		// state directory if the launcher has not made it yet).
		keys, err := i.hostKeys(ctx, rec, im.Manifest)
		if err != nil {
			return err
		}
		for _, key := range keys {
			if key.PublicKey != "" {
				hosts = fmt.Appendf(hosts, "%s %s\n", knownHostsName(ap), key.PublicKey)
			}
		}
	}
	return renameio.WriteFile(filepath.Join(i.Dir, KnownHostsFile), hosts, 0o644)
}

// readyAndConfigure waits for every endpoint in parallel and configures
// each as soon as it is ready. A boot failure cancels the rest and is
// returned; configuration failures come back as one *ConfigureError.
func (i *Instance) readyAndConfigure(ctx context.Context, p *prepared, rep reporter) error {
	stage := i.opts.Stage
	if stage >= 0 {
		if err := i.mutate(func(d *Instance) { d.Stage = stage }); err != nil {
			return err
		}
	}
	var mu sync.Mutex
	var results []configure.Result
	g, gctx := errgroup.WithContext(ctx)
	for k, ep := range p.model.Endpoints {
		rec := i.Endpoints[k]
		g.Go(func() error {
			i.mu.Lock()
			t0, ok := i.started[rec.Name]
			i.mu.Unlock()
			if !ok {
				t0 = time.Now()
			}
			if err := i.waitReady(gctx, rec); err != nil {
				if gctx.Err() == nil || errors.Is(err, ErrBoot) {
					_ = i.update(rec.Name, func(e *RunningEndpoint) { e.State, e.Error = StateFailed, text.FirstLine(err.Error()) })
					rep.report(StepFailed, rec.Name, fmt.Sprintf("%s did not boot", rec.Name), err)
				}
				return err
			}
			boot := time.Since(t0)
			bootID := i.runtime().Observe(gctx, rec).Boot
			_ = i.update(rec.Name, func(e *RunningEndpoint) { e.State, e.Boot, e.BootID = StateReady, boot, bootID })
			rep.report(StepReady, rec.Name, fmt.Sprintf("%s ready in %.1fs", rec.Name, boot.Seconds()), nil)
			if stage < 0 {
				return nil
			}
			rs := i.configure(gctx, stage, []configTarget{{ep, rec, p.images[ep.Image]}}, rep)
			mu.Lock()
			results = append(results, rs...)
			mu.Unlock()
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := i.writeKnownHosts(ctx, p.images); err != nil { // with keys learned at boot
		return err
	}
	return configureError(stage, results)
}

// waitReady waits, up to Options.ReadyTimeout, for the runtime to say the
// endpoint is ready. A boot that fails or runs out of time is a
// *BootError with the endpoint's console and launcher tails.
func (i *Instance) waitReady(ctx context.Context, rec RunningEndpoint) error {
	timeout := i.opts.readyTimeout()
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := i.runtime().Ready(rctx, rec)
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		return ctx.Err()
	case rctx.Err() != nil:
		return i.bootError(rec, fmt.Sprintf("not ready after %v", timeout))
	}
	return i.bootError(rec, err.Error())
}

// bootError describes a failed boot with the console and launcher tails.
func (i *Instance) bootError(rec RunningEndpoint, reason string) *BootError {
	logs := i.runtime().Logs(context.Background(), rec)
	return &BootError{Endpoint: rec.Name, Reason: reason, Console: logs.Console, Log: logs.Launcher, LogFile: logs.Where}
}

// sshCommand is the OpenSSH command line that logs in to an endpoint at
// addr, trusting exactly its pinned host keys (and no other: strict
// checking, so an unknown or changed key is refused, never asked about).
func sshCommand(user string, addr netip.AddrPort, knownHosts string) string {
	cmd := "ssh -o UserKnownHostsFile=" + knownHosts + " -o StrictHostKeyChecking=yes"
	if addr.Port() != 22 {
		cmd += fmt.Sprintf(" -p %d", addr.Port())
	}
	return cmd + " " + user + "@" + addr.Addr().String()
}

// knownHostsName is how known_hosts names a host at addr.
func knownHostsName(addr netip.AddrPort) string {
	if addr.Port() == 22 {
		return addr.Addr().String()
	}
	return fmt.Sprintf("[%s]:%d", addr.Addr(), addr.Port())
}

// sshGuestPort is the image's SSH port in the guest.
func sshGuestPort(m vmimage.Manifest) int {
	if m.APIs.SSH != 0 {
		return m.APIs.SSH
	}
	return 22
}

// Plan does what Up does before it creates anything — validate the
// lesson, resolve (or build) every image, plan the endpoints and their
// wiring — and returns the Placement Up would give the runtime, for a
// runtime to render elsewhere (`lesson render --kubernetes` prints a
// cluster's objects). Nothing is started, created or checked against an
// existing instance; Options.Instance, Stage, Images and Runtime matter.
func Plan(ctx context.Context, lessonDir string, opts Options) (*Placement, error) {
	rep := reporter{fn: opts.Progress, start: time.Now()}
	p, err := prepare(ctx, lessonDir, &opts, rep, false)
	if err != nil {
		return nil, err
	}
	inst := newInstance(p, InstanceDir(opts.stateRoot(), p.name), opts)
	pl := inst.placement(p, rep)
	pl.Record = func(string, func(*RunningEndpoint)) error { return nil } // no record: nothing is placed
	return pl, nil
}
