package endpointkit

import (
	"context"
	"fmt"
	"strings"
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
	rec   Endpoint
	image *vmimage.Image
}

// target is how package configure reaches the endpoint: its management
// address and forwarded ports, the image's pinned host keys.
func (c configTarget) target(lessonDir string) configure.Target {
	m := c.image.Manifest
	return configure.TargetFor(c.ep, lessonDir, configure.Access{
		Address:     c.rec.Address.String(),
		SSHPort:     sshHostPort(c.rec, m),
		NetconfPort: hostPort(c.rec, m.APIs.NETCONF, 830),
		HostKeys:    m.HostKeys,
	})
}

// Configure applies stage to every endpoint of the running instance, in
// parallel, and records the outcome in each endpoint's State. The lesson
// is read again from its directory, so edited configuration files are
// picked up. A failure on some endpoints leaves the others configured and
// returns a *ConfigureError naming the failed ones. ctx bounds the call.
func (i *Instance) Configure(ctx context.Context, stage int) error {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	_, m, images, err := loadModel(i.LessonDir, i.imageDirs())
	if err != nil {
		return err
	}
	if stage < 0 || stage >= m.StageCount {
		return fmt.Errorf("lesson %s: stage %d: the lesson has stages 0 to %d: %w", i.Lesson, stage, m.StageCount-1, ErrBadStage)
	}
	var cts []configTarget
	for _, rec := range i.Endpoints {
		ep := m.Endpoint(rec.Name)
		if ep == nil {
			return fmt.Errorf("lesson %s: endpoint %s is running but no longer in the lesson; Down and Up again", i.Lesson, rec.Name)
		}
		cts = append(cts, configTarget{*ep, rec, images[rec.Image]})
	}
	i.Stage = stage
	results := i.configure(ctx, stage, cts, rep)
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := i.save(); err != nil {
		return err
	}
	return configureError(stage, results)
}

// configure runs stage on the targets and records each result.
func (i *Instance) configure(ctx context.Context, stage int, cts []configTarget, rep reporter) []configure.Result {
	targets := make([]configure.Target, len(cts))
	for k, c := range cts {
		targets[k] = c.target(i.LessonDir)
		_ = i.update(c.rec.Name, func(e *Endpoint) { e.State, e.Error = StateConfiguring, "" })
		rep.report(StepConfigure, c.rec.Name, fmt.Sprintf("%s: stage %d (%s)", c.rec.Name, stage, methodOf(c.ep, stage)), nil)
	}
	log := i.opts.log()
	results := configure.Run(ctx, stage, targets, configure.Options{
		Timeout: i.opts.ConfigTimeout,
		// The launcher has seen SSH answer already; from the host it is one
		// bridge away, so a long wait means the management path is broken.
		Reach:         &configure.ReachOptions{Timeout: reachTimeout, Scale: float64(scaleFor(i.Accel)), Logger: log},
		Configurators: i.opts.Configurators,
		Logger:        log,
	})
	for _, r := range results {
		_ = i.update(r.Endpoint, func(e *Endpoint) {
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

// loadModel reads the lesson again and derives its endpoint model with the
// given image directories.
func loadModel(lessonDir string, imageDirs map[string]string) (*lessonmeta.Lesson, *endpoint.Model, imageMetas, error) {
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
	m, err := endpoint.Build(l, images)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("lesson %s: %w", l.File, err)
	}
	return l, m, images, nil
}

// firstLine is the first line of an error's text.
func firstLine(err error) string {
	s, _, _ := strings.Cut(err.Error(), "\n")
	return s
}
