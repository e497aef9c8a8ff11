package endpointkit

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/vmimage"
)

// reachTimeout bounds the wait for an endpoint's SSH from the host (×4
// under TCG).
const reachTimeout = time.Minute

// configTarget is one endpoint to configure: its model, its record and
// its image.
type configTarget struct {
	ep    endpoint.Endpoint
	rec   RunningEndpoint
	image *vmimage.Image
}

// target is how package configure reaches the endpoint: where the runtime
// reaches its SSH and NETCONF ports (both at the SSH port's address), the
// guest's pinned host keys (its image's, its instance identity's, or those
// its launcher learned from its console: see HostKeyer). The address stays usable until ctx ends.
func (i *Instance) target(ctx context.Context, c configTarget) (configure.Target, error) {
	m := c.image.Manifest
	keys, err := i.hostKeys(ctx, c.rec, m)
	if err != nil {
		return configure.Target{}, err
	}
	ssh, err := i.runtime().Reach(ctx, c.rec, sshGuestPort(m))
	if err != nil {
		return configure.Target{}, err
	}
	guest := m.APIs.NETCONF
	if guest == 0 {
		guest = 830
	}
	netconf := netip.AddrPortFrom(ssh.Addr(), uint16(guest)) // not exposed: nothing answers there
	for _, p := range c.rec.Ports {
		if p.Guest == guest {
			if netconf, err = i.runtime().Reach(ctx, c.rec, guest); err != nil {
				return configure.Target{}, err
			}
		}
	}
	return configure.TargetFor(c.ep, i.LessonDir, configure.Access{
		Address:     ssh.Addr().String(),
		SSHPort:     int(ssh.Port()),
		NetconfPort: int(netconf.Port()),
		HostKeys:    keys,
	}), nil
}

// Configure applies stage to every endpoint of the running instance, in
// parallel, and records the outcome in each endpoint's State. The lesson
// is read again from its directory, so edited configuration files are
// picked up. A failure on some endpoints leaves the others configured and
// returns a *ConfigureError naming the failed ones. ctx bounds the call.
func (i *Instance) Configure(ctx context.Context, stage int) error {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	i.reload()
	if err := i.notAbandoned(); err != nil {
		return err
	}
	l, m, images, err := i.model()
	if err != nil {
		return err
	}
	if err := l.CheckStage(stage); err != nil {
		return err
	}
	var cts []configTarget
	var results []configure.Result
	for _, rec := range i.Endpoints {
		ep := m.Endpoint(rec.Name)
		if ep == nil {
			return fmt.Errorf("lesson %s: endpoint %s is running but no longer in the lesson; Down and Up again", i.Lesson, rec.Name)
		}
		// An endpoint that is not running fails now, naming its state,
		// instead of after the reachability deadline.
		if err := i.ready(ctx, rec); err != nil {
			meth := endpoint.Method(methodOf(*ep, stage))
			results = append(results, configure.Result{Endpoint: rec.Name, Stage: stage, Method: meth,
				Err: &configure.Error{Endpoint: rec.Name, Stage: stage, Method: meth, Err: err}})
			rep.report(StepFailed, rec.Name, fmt.Sprintf("%s: stage %d not applied", rec.Name, stage), err)
			continue
		}
		cts = append(cts, configTarget{*ep, rec, images[rec.Image]})
	}
	if err := i.mutate(func(d *Instance) { d.Stage = stage }); err != nil {
		return err
	}
	results = append(results, i.configure(ctx, stage, cts, rep)...)
	if err := ctx.Err(); err != nil {
		return err
	}
	return configureError(stage, results)
}

// configure runs stage on the targets and records each result.
func (i *Instance) configure(ctx context.Context, stage int, cts []configTarget, rep reporter) []configure.Result {
	ctx, cancel := context.WithCancel(ctx) // the runtime's addresses last as long
	defer cancel()
	var targets []configure.Target
	var results []configure.Result
	for _, c := range cts {
		t, err := i.target(ctx, c)
		if err != nil {
			m := endpoint.Method(methodOf(c.ep, stage))
			results = append(results, configure.Result{Endpoint: c.rec.Name, Stage: stage, Method: m,
				Err: &configure.Error{Endpoint: c.rec.Name, Stage: stage, Method: m, Err: err}})
			continue
		}
		targets = append(targets, t)
		_ = i.update(c.rec.Name, func(e *RunningEndpoint) { e.State, e.Error = StateConfiguring, "" })
		rep.report(StepConfigure, c.rec.Name, fmt.Sprintf("%s: stage %d (%s)", c.rec.Name, stage, methodOf(c.ep, stage)), nil)
	}
	log := i.opts.log()
	results = append(results, configure.Run(ctx, stage, targets, configure.Options{
		Timeout: i.opts.ConfigTimeout,
		// The launcher has seen SSH answer already; from the host it is one
		// bridge away, so a long wait means the management path is broken.
		Reach:         &configure.ReachOptions{Timeout: reachTimeout, Scale: float64(i.Accel.SlowDown()), Logger: log},
		Configurators: i.opts.Configurators,
		Logger:        log,
	})...)
	for _, r := range results {
		_ = i.update(r.Endpoint, func(e *RunningEndpoint) {
			e.Configure = r.Duration
			if r.OK {
				e.State, e.Stage, e.Error = StateConfigured, stage, ""
			} else {
				e.State, e.Error = StateConfigFailed, r.Err.Error()
			}
		})
		if r.OK {
			how := "configured"
			if r.Skipped {
				how = "nothing to configure"
			}
			rep.report(StepConfigured, r.Endpoint, fmt.Sprintf("%s: stage %d %s in %.1fs", r.Endpoint, stage, how, r.Duration.Seconds()), nil)
		} else {
			rep.report(StepFailed, r.Endpoint, fmt.Sprintf("%s: stage %d failed", r.Endpoint, stage), r.Err)
		}
	}
	return results
}

// configureError is a *ConfigureError for the failed results, or nil.
func configureError(stage int, results []configure.Result) error {
	var failed []configure.Result
	for _, r := range results {
		if !r.OK {
			failed = append(failed, r)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return &ConfigureError{Stage: stage, Failed: failed}
}

func methodOf(ep endpoint.Endpoint, stage int) string {
	if stage < len(ep.Stages) && ep.Stages[stage].Method != endpoint.MethodNone {
		return string(ep.Stages[stage].Method)
	}
	return "none"
}

// imageDirs maps each image slug of the instance to its directory.
func (i *Instance) imageDirs() map[string]string {
	dirs := map[string]string{}
	for _, e := range i.Endpoints {
		dirs[e.Image] = e.ImageDir
	}
	return dirs
}

// loadModel reads the lesson again and derives the endpoint model of
// instance with the given image directories.
func loadModel(lessonDir, instance string, imageDirs map[string]string) (*lessonmeta.Lesson, *endpoint.Model, imageMetas, error) {
	l, err := lessonmeta.Load(lessonDir, lessonmeta.Options{})
	if err != nil {
		return nil, nil, nil, fmt.Errorf("lesson %s: %w", lessonDir, err)
	}
	images := imageMetas{}
	for slug, dir := range imageDirs {
		im, err := loadImageDir(dir, slug)
		if err != nil {
			return nil, nil, nil, err
		}
		images[slug] = im
	}
	m, err := (endpoint.Options{Instance: instance}).Build(l, images)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	return l, m, images, nil
}
