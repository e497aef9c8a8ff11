package endpointkit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"

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

// LogOptions tune [Instance.Logs]. The zero value prints the whole
// console log.
type LogOptions struct {
	Source LogSource // default LogConsole
	// Lines limits the output to the last Lines lines (0: all that is
	// kept; the console keeps its last 1-2 MiB).
	Lines int
	// Follow goes on writing what the endpoint logs — across the console
	// log's rotation and the launcher's restarts of it — until ctx ends
	// or the endpoint's launcher is gone.
	Follow bool
}

// Logs writes one of an endpoint's logs to w.
func (i *Instance) Logs(ctx context.Context, endpoint string, w io.Writer, o LogOptions) error {
	rec, ok := i.Endpoint(endpoint)
	if !ok {
		return i.noEndpoint(endpoint)
	}
	path, rotated := qemulaunch.StateDir(rec.StateDir).ConsoleLog(), ""
	switch o.Source {
	case LogConsole, "":
		rotated = path + ".1"
	case LogLauncher:
		path = rec.Log
	default:
		return fmt.Errorf("endpoint %s: unknown log %q (%s or %s)", endpoint, o.Source, LogConsole, LogLauncher)
	}
	err := logtail.Copy(ctx, w, path, logtail.Options{Lines: o.Lines, Rotated: rotated, Follow: o.Follow,
		Done: func() bool { return !processAlive(rec.PID, rec.StateDir) }})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("endpoint %s: no %s log at %s (%w): its launcher has not started, or the instance was removed", endpoint, cmp.Or(o.Source, LogConsole), path, fs.ErrNotExist)
	}
	return err
}

// Console connects to an endpoint's serial console: reading gives what
// the guest prints, starting with the last lines it printed before (the
// login prompt, say); writing types into it. Any number of connections may
// be open at once; closing one leaves the VM running. An endpoint whose VM
// is not running fails at once, with its state.
func (i *Instance) Console(ctx context.Context, endpoint string) (io.ReadWriteCloser, error) {
	rec, ok := i.Endpoint(endpoint)
	if !ok {
		return nil, i.noEndpoint(endpoint)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", rec.ConsoleSocket)
	if err != nil {
		state := "not running"
		for _, e := range i.Status() {
			if e.Name == endpoint {
				state = string(e.State)
				if e.Error != "" {
					state += ": " + e.Error
				}
			}
		}
		return nil, fmt.Errorf("endpoint %s: console: %w (endpoint %s)", endpoint, err, state)
	}
	return conn, nil
}

func (i *Instance) noEndpoint(name string) error {
	return fmt.Errorf("instance %s: no endpoint %q (endpoints: %s)", i.Name, name, i.endpointNames())
}
