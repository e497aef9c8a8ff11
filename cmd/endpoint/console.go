package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/endpointkit/endpointkit/internal/termio"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// stateDir parses --name/--state and resolves the state directory.
func stateDir(name string, args []string, stderr io.Writer) (qemulaunch.StateDir, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.String("name", os.Getenv("ENDPOINT_NAME"), "instance name (state dir /run/endpointkit/NAME) ($ENDPOINT_NAME)")
	s := fs.String("state", os.Getenv("ENDPOINT_STATE"), "state directory ($ENDPOINT_STATE)")
	if err := fs.Parse(args); err != nil {
		return "", fmt.Errorf("%w: %v", qemulaunch.ErrUsage, err)
	}
	return qemulaunch.StateDirOf(*s, *n)
}

// runConsole attaches to the console socket: output to stdout, stdin to
// the guest; Ctrl-] detaches. On a terminal, stdin is put in raw mode.
func runConsole(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	d, err := stateDir("console", args, stderr)
	if err != nil {
		return err
	}
	conn, err := net.Dial("unix", d.ConsoleSocket())
	if err != nil {
		return fmt.Errorf("console of %s: %w (is `endpoint run` running with this state dir?)", d, err)
	}
	defer conn.Close()
	return termio.Attach(ctx, conn, stdin, stdout, stderr)
}

// runHealth exits 0 when the instance is ready (for container HEALTHCHECK).
func runHealth(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	d, err := stateDir("health", args, stderr)
	if err != nil {
		return err
	}
	state, detail, err := qemulaunch.ReadHealth(d)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, state, detail)
	if state != qemulaunch.HealthReady {
		return fmt.Errorf("not ready: %s", state)
	}
	return nil
}

// runHostKeys prints, as JSON, the SSH host keys the launcher learned from
// the guest's console ([] when none were: an image that lists its keys, or
// a guest not booted yet).
func runHostKeys(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	d, err := stateDir("hostkeys", args, stderr)
	if err != nil {
		return err
	}
	keys := qemulaunch.PinnedHostKeys(d, vmimage.Manifest{})
	if keys == nil {
		keys = []vmimage.HostKey{}
	}
	return json.NewEncoder(stdout).Encode(keys)
}
