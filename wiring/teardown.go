package wiring

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// Teardown removes everything the state file in stateDir records: the
// nftables table, the host-side links (the management bridge and the host
// ends of eth0, in one request by link group when no other link shares the
// group), and the namespaces, which takes every link inside them along.
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
	var errs []error
	if st.HostNetNS == "" || nsutil.Exists(st.HostNetNS) {
		errs = append(errs, teardownHost(st))
	}
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
	errs = append(errs, g.Wait())
	if err := errors.Join(errs...); err != nil {
		return err
	}
	log.Debug("torn down", "namespaces", len(st.Namespaces), "hostLinks", len(st.HostLinks))
	return removeStateFile(stateDir)
}

// teardownHost removes the nftables table and the host-side links.
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
	if err := host.refresh(); err != nil {
		return errors.Join(append(errs, fmt.Errorf("wiring: instance %s: host namespace: %w", st.Instance, err))...)
	}
	// Delete by group in one kernel batch, unless a link that is not ours
	// shares the group number.
	ours, foreign := 0, false
	for name, lk := range host.existing {
		if lk.Attrs().Group == st.Group {
			if slices.Contains(st.HostLinks, name) {
				ours++
			} else {
				foreign = true
			}
		}
	}
	ignoreGone := func(what string) func(error) error {
		return func(err error) error {
			if errors.Is(err, unix.ENODEV) {
				return nil // already gone with its peer's namespace
			}
			return fmt.Errorf("wiring: instance %s: delete %s: %w", st.Instance, what, err)
		}
	}
	var b batch
	if ours > 0 && !foreign {
		b.add(ignoreGone(fmt.Sprintf("host links of group %#x", st.Group)), delGroupReq(st.Group))
	}
	for _, name := range st.HostLinks {
		lk, ok := host.existing[name]
		if ok && (foreign || lk.Attrs().Group != st.Group) {
			b.add(ignoreGone("host link "+name), delLinkReq(lk.Attrs().Index))
		}
	}
	if err := host.rt.run(&b); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
