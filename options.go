package endpointkit

import (
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// DefaultStateRoot holds one state directory per running lesson instance
// (shared with wiring and qemulaunch).
const DefaultStateRoot = "/run/endpointkit"

// Defaults of [Options].
const (
	DefaultReadyTimeout = 10 * time.Minute
	DefaultStopGrace    = 3 * time.Second
)

// Options tune Up, and Open for what a reattached instance does next
// (Configure, Down). The zero value is usable: instance named after the
// lesson, stage 0, state under /run/endpointkit, images found as [Catalog]
// says.
type Options struct {
	// Instance names this running copy of the lesson: lower-case letters,
	// digits and inner dashes (at most 40). Default: the lesson's slug.
	Instance string
	// Stage is the stage Up configures (default 0). A negative stage
	// leaves the endpoints unconfigured.
	Stage int
	// StateRoot is the parent of instance state directories; default
	// DefaultStateRoot.
	StateRoot string
	// Images says where endpoint images come from.
	Images Catalog
	// Launcher is the endpoint launcher binary (cmd/endpoint). Default:
	// "endpoint" beside the running executable, else on PATH.
	Launcher string
	// Accel is the accelerator (auto, kvm, tcg); $ENDPOINTKIT_ACCEL
	// overrides it. Up resolves it once (auto probes KVM) and starts every
	// endpoint with the result.
	Accel qemulaunch.Accel
	// ReadyTimeout bounds the boot of every endpoint, from the launcher's
	// start to "ready" (default DefaultReadyTimeout; launchers usually fail
	// sooner on their own deadlines).
	ReadyTimeout time.Duration
	// ConfigTimeout bounds each endpoint's configuration, reachability wait
	// included (default: package configure's, 10 min × the TCG scale).
	ConfigTimeout time.Duration
	// StopGrace is how long a guest gets to power off when the instance
	// goes down before QEMU is quit (default DefaultStopGrace, ×4 under
	// TCG).
	StopGrace time.Duration
	// Runtime places the instance and reaches its endpoints (see
	// [Runtime]); nil is the local runtime: namespaces, links and launcher
	// processes on this machine. Open and Teardown use it too; when it is
	// nil they rebuild the runtime an instance's record names with
	// RuntimeFor.
	Runtime Runtime
	// RuntimeFor makes the runtime an instance record names (see
	// [Recorded]) when Runtime is nil: how `lesson status` reaches an
	// instance on a cluster without being given the cluster again.
	RuntimeFor func(RuntimeRecord) (Runtime, error)
	// KeepOnFailure leaves what Up placed when an endpoint does not become
	// ready, for inspection (remove it with Teardown); a cancelled Up
	// (Ctrl-C) still removes everything.
	KeepOnFailure bool
	// Restart is the instance's restart policy (default on-failure): an
	// endpoint whose VM ends unasked is started again — by its launcher
	// in place, or by the instance's healer (see Heal) when the launcher
	// or the namespace is gone — and the current stage configured on it;
	// never leaves it down.
	Restart qemulaunch.RestartPolicy
	// Replace tears down an existing instance of the same name first;
	// otherwise Up fails with ErrInstanceExists.
	Replace bool
	// Configurators replace package configure's built-in configurator of
	// a method, e.g. the python method's interpreter:
	// {endpoint.MethodPython: &configure.Python{Interpreter: "/usr/bin/python3"}}
	// (`lesson up --python`). Default: configure.DefaultConfigurators.
	Configurators map[endpoint.Method]configure.Configurator
	// Logger receives structured details (debug and info); nil discards.
	Logger *slog.Logger
	// Progress, when set, is called for each step of Up, Configure and
	// Down, from several goroutines at once; a CLI draws progress from it.
	Progress func(Event)
}

// Step names a step reported through Options.Progress.
type Step string

// Steps, in the order Up takes them (per endpoint from StepBoot on).
const (
	StepValidate   Step = "validate"   // lesson read and checked
	StepImage      Step = "image"      // an image resolved (built or found)
	StepWire       Step = "wire"       // namespaces and links created
	StepBoot       Step = "boot"       // an endpoint's launcher started
	StepReady      Step = "ready"      // an endpoint answers
	StepConfigure  Step = "configure"  // an endpoint's stage configuration started
	StepConfigured Step = "configured" // an endpoint's stage configuration succeeded
	StepFailed     Step = "failed"     // an endpoint failed (Err says why)
	StepTeardown   Step = "teardown"   // the instance (or, with Endpoint, one endpoint) is being removed
	StepStopped    Step = "stopped"    // an endpoint's VM and launcher have ended (teardown)
	StepRestart    Step = "restart"    // an endpoint is being started again
	StepLink       Step = "link"       // a link is being added to or removed from the running instance
	StepDone       Step = "done"       // the operation finished
)

// Event is one progress report.
type Event struct {
	Step     Step
	Endpoint string        // "" for instance-wide steps
	Image    string        // for StepImage: the image slug
	Message  string        // one human line
	Elapsed  time.Duration // since the operation began
	Err      error         // for StepFailed
}

func (o *Options) log() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return o.Logger
}

// runtime is Options.Runtime, else a local runtime.
func (o *Options) runtime() Runtime {
	if o.Runtime != nil {
		return o.Runtime
	}
	return newLocalRuntime(*o)
}

func (o *Options) stateRoot() string {
	if o.StateRoot == "" {
		return DefaultStateRoot
	}
	return o.StateRoot
}

func (o *Options) accel() qemulaunch.Accel {
	if v := os.Getenv(qemulaunch.AccelEnv); v != "" {
		return qemulaunch.Accel(v)
	}
	if o.Accel == "" {
		return qemulaunch.AccelAuto
	}
	return o.Accel
}

func (o *Options) readyTimeout() time.Duration {
	if o.ReadyTimeout <= 0 {
		return DefaultReadyTimeout
	}
	return o.ReadyTimeout
}

func (o *Options) stopGrace() time.Duration {
	if o.StopGrace <= 0 {
		return DefaultStopGrace
	}
	return o.StopGrace
}

// reporter sends progress events stamped with the time since start.
type reporter struct {
	fn    func(Event)
	start time.Time
}

func (r reporter) report(step Step, ep, msg string, err error) {
	r.event(Event{Step: step, Endpoint: ep, Message: msg, Err: err})
}

// event sends e stamped with the elapsed time.
func (r reporter) event(e Event) {
	if r.fn != nil {
		e.Elapsed = time.Since(r.start)
		r.fn(e)
	}
}
