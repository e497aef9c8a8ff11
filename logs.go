package endpointkit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"

	"github.com/endpointkit/endpointkit/internal/logtail"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// LogSource names one of an endpoint's logs.
type LogSource string

// Log sources.
const (
	// LogConsole is what the VM printed on its serial console: kernel,
	// boot and login prompt, and whatever a console session showed.
	LogConsole LogSource = "console"
	// LogLauncher is the endpoint launcher's own output: the accelerator,
	// interfaces and forwards it set up, QEMU's errors, readiness, exit.
	LogLauncher LogSource = "launcher"
)

// LogOptions tune [Instance.WriteLog]. The zero value prints the whole
// console log.
type LogOptions struct {
	Source LogSource // default LogConsole
	// Lines limits the output to the last Lines lines (0: all that is
	// kept; the local console keeps its last 1-2 MiB).
	Lines int
	// Follow goes on writing what the endpoint logs — across the console
	// log's rotation and the launcher's restarts of it — until ctx ends
	// or the endpoint's launcher is gone.
	Follow bool
}

// LogWriter is implemented by a [Runtime] that can print an endpoint's
// logs whole and follow them (`lesson logs`); the local runtime does. With
// a runtime that does not, [Instance.WriteLog] prints the tails of
// Runtime.Logs and cannot follow.
type LogWriter interface {
	WriteLog(ctx context.Context, ep RunningEndpoint, w io.Writer, o LogOptions) error
}

// WriteLog writes one of an endpoint's logs to w, through the runtime. A
// runtime that cannot follow logs fails a Follow with an error wrapping
// errors.ErrUnsupported.
func (i *Instance) WriteLog(ctx context.Context, endpoint string, w io.Writer, o LogOptions) error {
	rec, ok := i.Endpoint(endpoint)
	if !ok {
		return i.noEndpoint(endpoint)
	}
	switch o.Source {
	case "", LogConsole, LogLauncher:
	default:
		return fmt.Errorf("endpoint %s: unknown log %q (%s or %s)", endpoint, o.Source, LogConsole, LogLauncher)
	}
	if lw, ok := i.runtime().(LogWriter); ok {
		return lw.WriteLog(ctx, rec, w, o)
	}
	if o.Follow {
		return fmt.Errorf("endpoint %s: following logs: %w by this runtime", endpoint, errors.ErrUnsupported)
	}
	logs := i.runtime().Logs(ctx, rec)
	text := logs.Console
	if o.Source == LogLauncher {
		text = logs.Launcher
	}
	if o.Lines > 0 {
		text = string(logtail.LastLines([]byte(text), o.Lines))
	}
	_, err := io.WriteString(w, text)
	return err
}

// WriteLog prints the console log files (console.log.1, then console.log)
// or the launcher's log file; a follow ends when the launcher is gone.
func (r *localRuntime) WriteLog(ctx context.Context, ep RunningEndpoint, w io.Writer, o LogOptions) error {
	path, rotated := qemulaunch.StateDir(ep.StateDir).ConsoleLog(), ""
	if o.Source == LogLauncher {
		path = ep.Log
	} else {
		rotated = path + ".1"
	}
	err := logtail.Copy(ctx, w, path, logtail.Options{Lines: o.Lines, Rotated: rotated, Follow: o.Follow,
		Done: func() bool { return !qemulaunch.LauncherRunning(ep.PID, ep.StateDir) }})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("endpoint %s: no %s log at %s (%w): its launcher has not started, or the instance was removed", ep.Name, cmp.Or(o.Source, LogConsole), path, fs.ErrNotExist)
	}
	return err
}

// consoleState describes an endpoint's state for a failed console attach.
func (i *Instance) consoleState(ctx context.Context, name string) string {
	for _, e := range i.Status(ctx) {
		if e.Name == name {
			return strings.TrimSuffix(string(e.State)+": "+e.Error, ": ")
		}
	}
	return "unknown"
}
