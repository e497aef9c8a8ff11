package wiring

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Teardown removes everything the state file in stateDir records: the
// nftables table, the host end of the management uplink, and the
// namespaces, which takes every link and bridge inside them along.
// It needs nothing but the state file, so it works after a partial Apply or
// a crash, and it is idempotent: without a state file it does nothing. The
// state file is removed once everything is gone (and the dir, if empty).
func (l *Local) Teardown(ctx context.Context, stateDir string) error {
	st, err := LoadState(stateDir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	log := l.log().With("instance", st.Instance)
	// The host side and the namespaces go in parallel: removing the uplink
	// waits for RCU grace periods, unmounting namespaces does not need it.
	hostErr := make(chan error, 1)
	go func() {
		if st.HostNetNS != "" && !nsutil.Exists(st.HostNetNS) {
			hostErr <- nil // the stand-in host took everything with it
			return
		}
		hostErr <- teardownHost(st)
	}()
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(l.workers())
	for _, ns := range st.Namespaces {
		g.Go(func() error {
			if err := nsutil.Delete(ns); err != nil {
				return fmt.Errorf("wiring: instance %s: %w", st.Instance, err)
			}
			return nil
		})
	}
	if err := errors.Join(g.Wait(), <-hostErr); err != nil {
		return err
	}
	log.Debug("torn down", "namespaces", len(st.Namespaces))
	return removeStateFile(stateDir)
}

// teardownHost removes the nftables table and the host link.
func teardownHost(st *State) error {
	host, err := openHostEnv(st.HostNetNS)
	if err != nil {
		return err
	}
	defer host.close()
	var errs []error
	if st.NFTable != "" {
		if err := deleteTable(host.fd, st.NFTable); err != nil {
			errs = append(errs, fmt.Errorf("wiring: instance %s: %w", st.Instance, err))
		}
	}
	if st.HostLinkMade {
		if err := deleteHostLink(host, st.HostLink, st.Instance); err != nil {
			errs = append(errs, fmt.Errorf("wiring: instance %s: %w", st.Instance, err))
		}
	}
	return errors.Join(errs...)
}

// Remove removes everything of the named instance on this host: what its
// state file records (Teardown of StateDir(instance)), then what a lost or
// damaged state file could not account for — every namespace named after
// the instance (its fabric ek-<instance>, ek-<instance>@<host>, and its
// endpoints' ek-<instance>.<endpoint>), its host link and its nftables
// table. (Deleting the
// fabric namespace destroys the host link too, but in the kernel's
// background cleanup, after Remove would have returned.) It is idempotent.
func (l *Local) Remove(ctx context.Context, instance string) error {
	if err := ValidInstance(instance); err != nil {
		return fmt.Errorf("wiring: %w", err)
	}
	var errs []error
	if err := l.Teardown(ctx, l.StateDir(instance)); err != nil {
		errs = append(errs, err)
	}
	n := newNames(instance)
	if l.HostNetNS == "" || nsutil.Exists(l.HostNetNS) {
		if err := removeHostLeftovers(l.HostNetNS, n); err != nil {
			errs = append(errs, fmt.Errorf("wiring: instance %s: %w", instance, err))
		}
	}
	ents, err := os.ReadDir(nsutil.Dir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("wiring: instance %s: %w", instance, err))
	}
	for _, e := range ents {
		if n.ownsNamespace(e.Name()) {
			if err := nsutil.Delete(e.Name()); err != nil {
				errs = append(errs, fmt.Errorf("wiring: instance %s: %w", instance, err))
			}
		}
	}
	return errors.Join(errs...)
}

// removeHostLeftovers deletes the instance's nftables table and host link
// from the host namespace (hostNetNS, "" = the caller's) where they are.
func removeHostLeftovers(hostNetNS string, n names) error {
	host, err := openHostEnv(hostNetNS)
	if err != nil {
		return err
	}
	defer host.close()
	return errors.Join(deleteTable(host.fd, n.nftTable()), deleteHostLink(host, n.hostLink(), n.instance))
}

// hostLinkAlias is the alias of an instance's host link: its owner.
func hostLinkAlias(instance string) string { return "endpointkit-instance:" + instance }

// deleteHostLink deletes the veth named link in host, if it is there and,
// when owner is given, belongs to that instance (its alias names it, or
// it has none: made before links were named).
func deleteHostLink(host *nsEnv, link, owner string) error {
	h, err := netlink.NewHandleAt(host.fd, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("host namespace: %w", err)
	}
	defer h.Close()
	lk, err := h.LinkByName(link)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) || errors.Is(err, unix.ENODEV) || (err == nil && lk.Type() != "veth") {
		return nil
	}
	if err == nil && owner != "" && lk.Attrs().Alias != "" && lk.Attrs().Alias != hostLinkAlias(owner) {
		return nil // another instance's (same tag)
	}
	if err == nil {
		err = h.LinkDel(lk)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete host link %s: %w", link, err)
	}
	return nil
}
