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
		h, err := netlink.NewHandleAt(host.fd, unix.NETLINK_ROUTE)
		if err != nil {
			return errors.Join(append(errs, fmt.Errorf("wiring: instance %s: host namespace: %w", st.Instance, err))...)
		}
		defer h.Close()
		lk, err := h.LinkByName(st.HostLink)
		if err == nil {
			err = h.LinkDel(lk)
		}
		var notFound netlink.LinkNotFoundError
		if err != nil && !errors.As(err, &notFound) && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("wiring: instance %s: delete host link %s: %w", st.Instance, st.HostLink, err))
		}
	}
	return errors.Join(errs...)
}
