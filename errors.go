package endpointkit

import (
	"errors"
	"fmt"
	"strings"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// Sentinel errors. Every error Up, Open, Configure and Teardown return that a
// user can cause wraps one of these (or a typed error below) and names the
// lesson file, endpoint or image at fault; test with errors.Is / errors.As.
var (
	// ErrUnknownImage: no built image directory and no recipe has the slug
	// an endpoint asks for.
	ErrUnknownImage = errors.New("unknown image")
	// ErrUnbuildable: a recipe exists but cannot be built as it is (for
	// example its vendor disk is missing).
	ErrUnbuildable = errors.New("image cannot be built")
	// ErrInstanceExists: Up was asked for an instance that already has a
	// state directory (use Options.Replace, or Teardown it first).
	ErrInstanceExists = errors.New("instance already exists")
	// ErrNoInstance: no instance state in the directory.
	ErrNoInstance = errors.New("no such instance")
	// ErrNoLauncher: the endpoint launcher binary (cmd/endpoint) was not
	// found.
	ErrNoLauncher = errors.New("endpoint launcher not found")
	// ErrBoot: an endpoint did not become ready (see [*BootError]).
	ErrBoot = errors.New("endpoint did not become ready")
	// ErrConfigure: configuring a stage failed on some endpoints (see
	// [*ConfigureError]); the instance stays up.
	ErrConfigure = errors.New("stage configuration failed")
	// ErrNotRunning: an endpoint's VM is not running (down, restarting,
	// still starting, stopping), so it cannot be configured, logged in to
	// or attached to now; the error names its state and what to do.
	ErrNotRunning = errors.New("endpoint not running")
	// ErrAbandoned: the instance's Up ended before it finished (killed):
	// remove it with Teardown (`lesson down`).
	ErrAbandoned = errors.New("instance abandoned mid-way by lesson up")
	// ErrBadStage: the stage does not exist in the lesson
	// (lessonmeta.ErrNoStage, the same error value).
	ErrBadStage = lessonmeta.ErrNoStage
)

// BootError says which endpoint did not become ready and why, with the tail
// of its serial console and of its launcher's log.
type BootError struct {
	Endpoint string
	Reason   string
	Console  string // tail of the serial console
	Log      string // tail of the launcher's output
	LogFile  string
}

func (e *BootError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "endpoint %s: %s", e.Endpoint, e.Reason)
	if e.Console != "" {
		fmt.Fprintf(&b, "\n--- console tail of %s ---\n%s", e.Endpoint, strings.TrimRight(e.Console, "\n"))
	}
	if e.Log != "" {
		fmt.Fprintf(&b, "\n--- launcher log (%s) ---\n%s", e.LogFile, strings.TrimRight(e.Log, "\n"))
	}
	return b.String()
}

// Unwrap makes errors.Is(err, ErrBoot) true.
func (e *BootError) Unwrap() error { return ErrBoot }

// ConfigureError lists the endpoints whose configuration failed at a stage;
// the other endpoints are configured and everything stays up.
type ConfigureError struct {
	Stage  int
	Failed []configure.Result // each Err is a *configure.Error naming endpoint, method and file
}

func (e *ConfigureError) Error() string {
	names := make([]string, len(e.Failed))
	for i, r := range e.Failed {
		names[i] = r.Endpoint
	}
	var b strings.Builder
	fmt.Fprintf(&b, "stage %d failed on %s", e.Stage, strings.Join(names, ", "))
	for _, r := range e.Failed {
		fmt.Fprintf(&b, "\n  %v", r.Err)
	}
	return b.String()
}

// Unwrap returns ErrConfigure and every endpoint's error.
func (e *ConfigureError) Unwrap() []error {
	errs := []error{ErrConfigure}
	for _, r := range e.Failed {
		errs = append(errs, r.Err)
	}
	return errs
}

// Errors of live topology (Instance.AddLink and RemoveLink). Each wraps one
// of these and names the endpoint, interface or link, and what to do.
var (
	// ErrNoEndpoint: the instance has no endpoint of that name
	// (endpoint.ErrNoEndpoint, the same error value).
	ErrNoEndpoint = endpoint.ErrNoEndpoint
	// ErrNotLink: the interface is not one end of a link of the instance
	// (endpoint.ErrNotLink).
	ErrNotLink = endpoint.ErrNotLink
	// ErrBadLink: the link cannot be added as asked (endpoint.ErrBadLink):
	// both ends on one endpoint, a subnet that is not a usable IPv4 prefix
	// or is another link's.
	ErrBadLink = endpoint.ErrBadLink
	// ErrNoHotplug: an end's VM cannot take the NIC, or its guest cannot:
	// the machine type, the image's NIC layout or the guest kernel has no
	// PCI hot-plug there (qemulaunch.ErrNoHotplug).
	ErrNoHotplug = qemulaunch.ErrNoHotplug
	// ErrLiveLinks: the instance's runtime cannot change links while the
	// instance runs (it does not implement LinkChanger).
	ErrLiveLinks = errors.New("runtime cannot change links of a running instance")
)
