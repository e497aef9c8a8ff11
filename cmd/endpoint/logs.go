package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/endpointkit/endpointkit/internal/logtail"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/vishvananda/netlink"
)

// runLogs prints the console log (console.log.1, then console.log), whole
// or its last lines, following it on request: how a cluster runtime reads
// an endpoint's console through the API server's exec.
func runLogs(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("logs", flag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.String("name", os.Getenv("ENDPOINT_NAME"), "instance name (state dir /run/endpointkit/NAME) ($ENDPOINT_NAME)")
	s := fs.String("state", os.Getenv("ENDPOINT_STATE"), "state directory ($ENDPOINT_STATE)")
	lines := fs.Int("lines", 0, "print only the last N lines (0: all that is kept)")
	follow := fs.Bool("follow", false, "go on printing what the console shows until interrupted")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", qemulaunch.ErrUsage, err)
	}
	d, err := qemulaunch.StateDirOf(*s, *n)
	if err != nil {
		return err
	}
	path := d.ConsoleLog()
	return logtail.Copy(ctx, stdout, path, logtail.Options{Lines: *lines, Rotated: path + ".1", Follow: *follow})
}

// runRemoveBridges deletes the named Linux bridges of this network
// namespace when no interface is attached to them any more: a cluster
// runtime runs it in a host-network pod on each node after an instance's
// pods are gone (the bridge CNI plugin never deletes a bridge). A bridge
// that is gone already is skipped; one still in use is kept and named.
func runRemoveBridges(_ context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "usage: endpoint remove-bridges NAME...")
		return fmt.Errorf("%w: no bridge named", qemulaunch.ErrUsage)
	}
	links, err := netlink.LinkList()
	if err != nil {
		return err
	}
	var errs []error
	for _, name := range args {
		l, err := netlink.LinkByName(name)
		if err != nil {
			fmt.Fprintf(stdout, "%s: gone\n", name)
			continue
		}
		if _, ok := l.(*netlink.Bridge); !ok {
			errs = append(errs, fmt.Errorf("%s is a %s, not a bridge: left alone", name, l.Type()))
			continue
		}
		ports := 0
		for _, p := range links {
			if p.Attrs().MasterIndex == l.Attrs().Index {
				ports++
			}
		}
		if ports > 0 {
			errs = append(errs, fmt.Errorf("%s still has %d interfaces: left alone", name, ports))
			continue
		}
		if err := netlink.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
			continue
		}
		fmt.Fprintf(stdout, "%s: removed\n", name)
	}
	return errors.Join(errs...)
}
