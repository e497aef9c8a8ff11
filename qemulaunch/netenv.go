package qemulaunch

import (
	"errors"
	"fmt"
	"os"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netEnv is the network namespace the VM lives in: a netlink handle bound to
// it (no thread switching) and, for what must run inside (TAP creation,
// sockets, exec), a way to run a function on a thread switched into it.
type netEnv struct {
	name string         // "" = the caller's namespace
	ns   netns.NsHandle // open handle to name; None for the caller's
	h    *netlink.Handle
}

func openNetEnv(name string) (*netEnv, error) {
	e := &netEnv{name: name, ns: netns.None()}
	if name == "" {
		h, err := netlink.NewHandle()
		if err != nil {
			return nil, fmt.Errorf("netlink: %w", err)
		}
		e.h = h
		return e, nil
	}
	ns, err := nsutil.Open(name)
	if err != nil {
		return nil, err
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		ns.Close()
		return nil, fmt.Errorf("netns %s: netlink: %w", name, err)
	}
	e.ns, e.h = ns, h
	return e, nil
}

// do runs fn inside the namespace: sockets it opens and processes it
// starts belong there. Goroutines fn starts do not.
func (e *netEnv) do(fn func() error) error {
	if e.name == "" {
		return fn()
	}
	return nsutil.DoHandle(e.ns, fn)
}

func (e *netEnv) close() {
	if e.h != nil {
		e.h.Close()
	}
	if e.name != "" {
		e.ns.Close()
	}
}

// linkList lists links, retrying a dump the kernel interrupted.
func (e *netEnv) linkList() ([]netlink.Link, error) {
	var err error
	for range 5 {
		var links []netlink.Link
		links, err = e.h.LinkList()
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			return links, err
		}
	}
	return nil, err
}

// privErr adds the fix to permission errors from netlink and ioctls.
func privErr(what string, err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, os.ErrPermission) {
		return fmt.Errorf("%s: %w (needs root or CAP_NET_ADMIN in the container's network namespace)", what, err)
	}
	return fmt.Errorf("%s: %w", what, err)
}
