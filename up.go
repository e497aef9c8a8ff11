package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
	"golang.org/x/sync/errgroup"
)

// cleanupTimeout bounds the teardown after a failed or cancelled Up.
const cleanupTimeout = 3 * time.Minute

// Up launches the lesson in lessonDir on this machine and returns it
// running: validate the lesson → resolve (or build) every image → plan the
// endpoints and their wiring → create the namespaces and links → start
// every endpoint's launcher (`endpoint run`, in the endpoint's namespace,
// in its own session, output in the state directory) → wait until each is
// ready → configure opts.Stage on each as soon as it is ready. Endpoints
// boot in parallel.
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
	p, err := prepare(ctx, lessonDir, &opts, rep)
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
	// From the first file on, a failure removes everything.
	keep := false
	defer func() {
		if keep {
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

	local := &wiring.Local{StateRoot: opts.stateRoot(), Logger: log}
	st, err := local.Apply(ctx, p.plan)
	if err != nil {
		return nil, fmt.Errorf("instance %s: wiring: %w", p.name, err)
	}
	for k := range inst.Endpoints {
		es, _ := st.Endpoint(inst.Endpoints[k].Name)
		inst.Endpoints[k].Namespace = es.Namespace
		inst.Endpoints[k].Address = es.MgmtAddress.Addr()
		inst.Endpoints[k].Presentations = presentations(p.model.Endpoints[k], inst.Endpoints[k], dir)
	}
	if err := inst.save(); err != nil {
		return nil, err
	}
	if err := writeKnownHosts(dir, inst.Endpoints, p.images); err != nil {
		return nil, err
	}
	rep.report(StepWire, "", fmt.Sprintf("%d namespaces, %d links, management %s", len(st.Endpoints), len(p.plan.Links), st.MgmtSubnet), nil)

	exited, started, err := inst.launchAll(p, st, rep)
	if err != nil {
		return nil, err
	}
	if err := inst.readyAndConfigure(ctx, p, exited, started, rep); err != nil {
		var cerr *ConfigureError
		if errors.As(err, &cerr) && ctx.Err() == nil {
			keep = true
			rep.report(StepDone, "", cerr.Error(), nil)
			return inst, err
		}
		return nil, err
	}
	keep = true
	rep.report(StepDone, "", fmt.Sprintf("instance %s up", inst.Name), nil)
	return inst, nil
}

// prepared is everything Up knows before it creates anything.
type prepared struct {
	name     string
	lesson   *lessonmeta.Lesson
	model    *endpoint.Model
	images   imageMetas
	plan     *wiring.Plan
	accel    qemulaunch.Accel
	launcher string
}

// prepare validates the lesson, resolves every image (building those that
// come from recipes), plans the endpoints and the wiring, resolves the
// accelerator and finds the launcher — all before anything starts.
func prepare(ctx context.Context, lessonDir string, opts *Options, rep reporter) (*prepared, error) {
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
	if dir := InstanceDir(opts.stateRoot(), p.name); !opts.Replace {
		if err := claim(ctx, dir, *opts); err != nil {
			return nil, err
		}
	}
	if opts.Stage >= len(l.Stages) {
		pos := l.Position("stages")
		return nil, fmt.Errorf("%s:%d:%d: stages: stage %d: the lesson has stages 0 to %d: %w", l.File, pos.Line, pos.Column, opts.Stage, len(l.Stages)-1, ErrBadStage)
	}
	rep.report(StepValidate, "", fmt.Sprintf("lesson %s: %d endpoints, %d links, %d stages", l.Slug, len(l.Endpoints), len(l.Connections), len(l.Stages)), nil)
	if p.launcher, err = FindLauncher(opts.Launcher); err != nil {
		return nil, err
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
		rep.report(StepImage, "", fmt.Sprintf("image %s %s: %s", slug, how, im.Dir), nil)
	}
	if p.model, err = endpoint.Build(l, p.images); err != nil {
		return nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	if err := checkNICs(l, p.model, p.images); err != nil {
		return nil, err
	}
	if p.plan, err = wiring.NewPlan(p.model, wiring.Options{Instance: p.name}); err != nil {
		return nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	if p.accel, err = qemulaunch.ResolveAccel(ctx, opts.accel(), "", opts.log()); err != nil {
		return nil, err
	}
	return p, nil
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
		Stage: -1, Created: time.Now().UTC().Truncate(time.Second), opts: opts}
	for _, ep := range p.model.Endpoints {
		im := p.images[ep.Image]
		inst.Endpoints = append(inst.Endpoints, Endpoint{
			Name: ep.Name, Image: ep.Image, ImageDir: im.Dir,
			Ports: forwards(ep, im.Manifest), SSHUser: ep.Credentials.SSHUser,
			StateDir:      filepath.Join(dir, ep.Name),
			ConsoleSocket: qemulaunch.StateDir(filepath.Join(dir, ep.Name)).ConsoleSocket(),
			Log:           filepath.Join(dir, ep.Name+".log"),
			State:         StateStarting, Stage: -1,
		})
	}
	return inst
}

// launchAll starts every endpoint's launcher in its namespace. exited[k]
// is closed when launcher k ends; started[k] is when it was started.
func (i *Instance) launchAll(p *prepared, st *wiring.State, rep reporter) ([]chan struct{}, []time.Time, error) {
	n := len(i.Endpoints)
	exited, started := make([]chan struct{}, n), make([]time.Time, n)
	grace := i.opts.stopGrace()
	for k, ep := range p.model.Endpoints {
		rec := i.Endpoints[k]
		if err := os.MkdirAll(rec.StateDir, 0o755); err != nil {
			return nil, nil, err
		}
		logf, err := os.OpenFile(rec.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, nil, err
		}
		cmd := launcherCmd(p.launcher, launcherArgs(ep, rec, i.LessonDir, p.accel, grace), p.accel, logf)
		started[k] = time.Now()
		err = st.Start(ep.Name, cmd)
		logf.Close()
		if err != nil {
			return nil, nil, fmt.Errorf("endpoint %s: start %s: %w", ep.Name, p.launcher, err)
		}
		exited[k] = make(chan struct{})
		go func(c chan struct{}) {
			_ = cmd.Wait() // reaps it; the exit status is in the log and the health file
			close(c)
		}(exited[k])
		if err := i.update(ep.Name, func(e *Endpoint) { e.PID = cmd.Process.Pid }); err != nil {
			return nil, nil, err
		}
		rep.report(StepBoot, ep.Name, fmt.Sprintf("%s booting (%s, pid %d)", ep.Name, ep.Image, cmd.Process.Pid), nil)
	}
	return exited, started, nil
}

// readyAndConfigure waits for every endpoint in parallel and configures
// each as soon as it is ready. A boot failure cancels the rest and is
// returned; configuration failures come back as one *ConfigureError.
func (i *Instance) readyAndConfigure(ctx context.Context, p *prepared, exited []chan struct{}, started []time.Time, rep reporter) error {
	stage := i.opts.Stage
	if stage >= 0 {
		i.Stage = stage
	}
	var mu sync.Mutex
	var results []configure.Result
	g, gctx := errgroup.WithContext(ctx)
	for k, ep := range p.model.Endpoints {
		rec := i.Endpoints[k]
		g.Go(func() error {
			if err := waitReady(gctx, rec, exited[k], i.opts.readyTimeout()); err != nil {
				if gctx.Err() == nil || errors.Is(err, ErrBoot) {
					_ = i.update(rec.Name, func(e *Endpoint) { e.State, e.Error = StateFailed, firstLine(err) })
					rep.report(StepFailed, rec.Name, fmt.Sprintf("%s did not boot", rec.Name), err)
				}
				return err
			}
			boot := time.Since(started[k])
			_ = i.update(rec.Name, func(e *Endpoint) { e.State, e.Boot = StateReady, boot })
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
	if err := i.save(); err != nil {
		return err
	}
	return configureError(stage, results)
}

// presentations describes how to reach each of the lesson's presentations
// of an endpoint from this machine.
func presentations(ep endpoint.Endpoint, rec Endpoint, dir string) []Presentation {
	var out []Presentation
	for _, pr := range ep.Presentations {
		p := Presentation{Name: pr.Name, Type: string(pr.Type), Port: pr.Port}
		host := pr.Port
		for _, fp := range rec.Ports {
			if fp.Guest == pr.Port {
				host = fp.Host
			}
		}
		switch pr.Type {
		case endpoint.PresentationSSH:
			p.Access = sshCommand(rec.SSHUser, rec.Address.String(), host, filepath.Join(dir, KnownHostsFile))
		case endpoint.PresentationHTTP:
			p.Access = fmt.Sprintf("http://%s:%d/", rec.Address, host)
		}
		out = append(out, p)
	}
	return out
}

// sshCommand is the OpenSSH command line that logs in to an endpoint,
// trusting exactly its pinned host keys.
func sshCommand(user, addr string, port int, knownHosts string) string {
	cmd := "ssh -o UserKnownHostsFile=" + knownHosts
	if port != 22 {
		cmd += fmt.Sprintf(" -p %d", port)
	}
	return cmd + " " + user + "@" + addr
}

// writeKnownHosts writes the pinned host keys of every endpoint's image
// under its management address (and SSH port).
func writeKnownHosts(dir string, eps []Endpoint, images imageMetas) error {
	var b []byte
	for _, e := range eps {
		im := images[e.Image]
		host := e.Address.String()
		if p := sshHostPort(e, im.Manifest); p != 22 {
			host = fmt.Sprintf("[%s]:%d", host, p)
		}
		for _, k := range im.Manifest.HostKeys {
			if k.PublicKey != "" {
				b = fmt.Appendf(b, "%s %s\n", host, k.PublicKey)
			}
		}
	}
	return os.WriteFile(filepath.Join(dir, KnownHostsFile), b, 0o644)
}

// sshHostPort is the host port forwarded to the image's SSH port.
func sshHostPort(e Endpoint, m vmimage.Manifest) int {
	return hostPort(e, m.APIs.SSH, 22)
}

// hostPort is the host port forwarded to guest port (def when unset).
func hostPort(e Endpoint, guest, def int) int {
	if guest == 0 {
		guest = def
	}
	for _, p := range e.Ports {
		if p.Guest == guest {
			return p.Host
		}
	}
	return guest
}
