package configure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
)

// Configurator configures one target for one stage. Implementations must
// honour ctx (its deadline is the endpoint's), must not log or return the
// target's password, and return what they did even when they fail.
type Configurator interface {
	Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error)
}

// ConfiguratorFunc adapts a function to [Configurator], e.g. a Linux
// endpoint's setup written with [SSHClient].
type ConfiguratorFunc func(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error)

// Configure calls f.
func (f ConfiguratorFunc) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	return f(ctx, t, sc)
}

var _ Configurator = ConfiguratorFunc(nil)

// Report is what a configurator did.
type Report struct {
	Steps  []Step
	Output string // tail of the combined output
}

// Step is one command, RPC or task.
type Step struct {
	Name     string // command line, RPC name or task name
	Line     int    // line in the configuration file, when known
	OK       bool
	Changed  bool // ansible's "changed"
	Status   int  // exit status, when there is one
	Output   string
	Duration time.Duration
}

// Result is the outcome of one endpoint.
type Result struct {
	Endpoint string
	Stage    int
	Method   endpoint.Method
	File     string
	Duration time.Duration
	OK       bool
	// Skipped: the endpoint has nothing to configure at this stage.
	Skipped bool
	// Err is an [*Error] naming the endpoint (nil when OK).
	Err    error
	Steps  []Step
	Output string // tail of the output, redacted
}

// Options tune [Run]. The zero value is usable.
type Options struct {
	// Concurrency bounds how many endpoints are configured at once
	// (default 16).
	Concurrency int
	// Timeout bounds each endpoint, reachability wait included (default
	// 10 min, times Reach.Scale).
	Timeout time.Duration
	// Reach, when set, makes Run wait for each endpoint to answer SSH (on
	// its NETCONF port for the netconf method) before configuring it.
	Reach *ReachOptions
	// Configurators replace or add methods; missing methods use
	// [DefaultConfigurators].
	Configurators map[endpoint.Method]Configurator
	// Logger receives one record per endpoint (nil: discard).
	Logger *slog.Logger
	// Progress, when set, is called (from several goroutines) as each
	// endpoint finishes: a CLI can draw progress from it.
	Progress func(Result)
}

// Run configures stage on every target in parallel and returns one Result
// per target, in the targets' order. A failing endpoint never stops or
// hides the others; its Result.Err is an [*Error] naming it.
func Run(ctx context.Context, stage int, targets []Target, o Options) []Result {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	confs := DefaultConfigurators(log)
	for m, c := range o.Configurators {
		confs[m] = c
	}
	n := o.Concurrency
	if n <= 0 {
		n = 16
	}
	results := make([]Result, len(targets))
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for i := range targets {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			results[i] = runOne(ctx, stage, targets[i], confs, o)
			r := results[i]
			attrs := []any{"endpoint", r.Endpoint, "stage", stage, "method", string(r.Method), "duration", r.Duration.Round(time.Millisecond), "ok", r.OK}
			if r.Err != nil {
				log.Warn("configure failed", append(attrs, "error", r.Err.Error())...)
			} else {
				log.Info("configured", attrs...)
			}
			if o.Progress != nil {
				o.Progress(r)
			}
		})
	}
	wg.Wait()
	return results
}

func runOne(ctx context.Context, stage int, t Target, confs map[endpoint.Method]Configurator, o Options) Result {
	start := time.Now()
	res := Result{Endpoint: t.Name, Stage: stage}
	secrets := []string{t.Password.Reveal()}
	fail := func(err error) Result {
		res.Duration = time.Since(start)
		res.Err = &Error{Endpoint: t.Name, Stage: stage, Method: res.Method, File: res.File, Err: redactErr(err, secrets)}
		res.Output = redact(res.Output, secrets)
		return res
	}
	sc, err := t.StageConfig(stage)
	if err != nil {
		return fail(err)
	}
	res.Method, res.File = sc.Method, sc.File
	if sc.Method == endpoint.MethodNone {
		res.OK, res.Skipped = true, true
		return res
	}
	conf, ok := confs[sc.Method]
	if !ok {
		return fail(fmt.Errorf("%w: no configurator for method %q", ErrUnsupported, sc.Method))
	}
	if sc.File == "" {
		return fail(fmt.Errorf("%w: the stage names no file for method %s", ErrMissingConfig, sc.Method))
	}
	if _, err := os.Stat(sc.File); err != nil {
		return fail(fmt.Errorf("%w: %s: add it to the lesson or change the endpoint's configurationType", ErrMissingConfig, sc.File))
	}

	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Minute
	}
	if o.Reach != nil && o.Reach.Scale > 1 {
		timeout = time.Duration(float64(timeout) * o.Reach.Scale)
	}
	tctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	if o.Reach != nil {
		addr := t.SSHAddr()
		if sc.Method == endpoint.MethodNetconf {
			addr = t.NetconfAddr()
		}
		if err := WaitReachable(tctx, addr, *o.Reach); err != nil {
			return fail(err)
		}
	}
	rep, err := conf.Configure(tctx, t, sc)
	res.Steps, res.Output = rep.Steps, rep.Output
	for i := range res.Steps {
		res.Steps[i].Output = redact(res.Steps[i].Output, secrets)
		res.Steps[i].Name = redact(res.Steps[i].Name, secrets)
	}
	if err != nil {
		if errors.Is(tctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil {
			err = fmt.Errorf("%w after %s: %w", ErrTimeout, timeout, err)
		}
		return fail(err)
	}
	res.OK = true
	res.Duration = time.Since(start)
	res.Output = redact(res.Output, secrets)
	return res
}

// DefaultConfigurators returns the built-in configurator of every method.
func DefaultConfigurators(log *slog.Logger) map[endpoint.Method]Configurator {
	return map[endpoint.Method]Configurator{
		endpoint.MethodSSH:     &SSH{},
		endpoint.MethodNetconf: &Netconf{},
		endpoint.MethodNapalm:  &Napalm{},
		endpoint.MethodAnsible: &Ansible{Logger: log},
		endpoint.MethodPython:  &Python{},
	}
}
