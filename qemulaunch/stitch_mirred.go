package qemulaunch

import (
	"errors"
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mirred stitches with tc: an ingress qdisc on each side and a u32 filter
// matching every frame (any protocol) whose mirred action redirects it to
// the other side's egress. Nothing is learned or filtered, so link-local
// protocols (LLDP, LACP, STP) cross unchanged. Only the u32 classifier is
// used because it is the one every kernel has (no matchall or flower).
type mirred struct{}

var _ stitcher = mirred{}

// mirredPrio is the filter priority this package owns on the ingress hook.
const mirredPrio = 0xe7

func (mirred) stitch(e *netEnv, eth, tap netlink.Link) error {
	for _, pair := range [][2]netlink.Link{{eth, tap}, {tap, eth}} {
		src, dst := pair[0], pair[1]
		if err := ensureIngress(e, src); err != nil {
			return err
		}
		// A re-stitch (dst re-created) must not leave a filter pointing at
		// the old ifindex in front of the new one.
		if err := dropOwnFilters(e, src); err != nil {
			return err
		}
		f := &netlink.U32{
			FilterAttrs: netlink.FilterAttrs{
				LinkIndex: src.Attrs().Index,
				Parent:    netlink.MakeHandle(0xffff, 0),
				Priority:  mirredPrio,
				Protocol:  unix.ETH_P_ALL,
			},
			// One key with mask 0 matches everything; TERMINAL ends the walk.
			Sel: &netlink.TcU32Sel{
				Flags: netlink.TC_U32_TERMINAL,
				Nkeys: 1,
				Keys:  []netlink.TcU32Key{{Mask: 0, Val: 0}},
			},
			Actions: []netlink.Action{netlink.NewMirredAction(dst.Attrs().Index)},
		}
		if err := e.h.FilterReplace(f); err != nil {
			return privErr(fmt.Sprintf("u32 redirect %s -> %s", src.Attrs().Name, dst.Attrs().Name), err)
		}
		if err := verifyRedirect(e, src, dst); err != nil {
			return err
		}
	}
	return nil
}

func ensureIngress(e *netEnv, l netlink.Link) error {
	q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
		LinkIndex: l.Attrs().Index,
		Handle:    netlink.MakeHandle(0xffff, 0),
		Parent:    netlink.HANDLE_INGRESS,
	}}
	if err := e.h.QdiscAdd(q); err != nil && !errors.Is(err, os.ErrExist) && !errors.Is(err, unix.EEXIST) {
		return privErr("ingress qdisc on "+l.Attrs().Name, err)
	}
	return nil
}

// verifyRedirect reads the filter back: a kernel without the u32 classifier
// or mirred action fails here with a clear message instead of a dead link.
func verifyRedirect(e *netEnv, src, dst netlink.Link) error {
	fs, err := listFilters(e, src)
	if err != nil {
		return err
	}
	redirs := 0
	for _, f := range fs {
		if u, ok := f.(*netlink.U32); ok && u.Attrs().Priority == mirredPrio {
			redirs++
		}
	}
	if redirs != 1 {
		return fmt.Errorf("%d redirect filters on %s, want 1", redirs, src.Attrs().Name)
	}
	for _, f := range fs {
		if u, ok := f.(*netlink.U32); ok && u.RedirIndex == dst.Attrs().Index {
			return nil
		}
	}
	return fmt.Errorf("redirect %s -> %s not installed (kernel lacks cls_u32 or act_mirred?)", src.Attrs().Name, dst.Attrs().Name)
}

func dropOwnFilters(e *netEnv, l netlink.Link) error {
	fs, err := listFilters(e, l)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if f.Attrs().Priority == mirredPrio {
			if err := e.h.FilterDel(f); err != nil && !errors.Is(err, unix.ENOENT) {
				return fmt.Errorf("remove old filter on %s: %w", l.Attrs().Name, err)
			}
		}
	}
	return nil
}

func listFilters(e *netEnv, l netlink.Link) ([]netlink.Filter, error) {
	var fs []netlink.Filter
	var err error
	for range 5 {
		fs, err = e.h.FilterList(l, netlink.MakeHandle(0xffff, 0))
		if !errors.Is(err, netlink.ErrDumpInterrupted) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("list filters on %s: %w", l.Attrs().Name, err)
	}
	return fs, nil
}

func (mirred) unstitch(e *netEnv, eth, tap netlink.Link) error {
	var errs []error
	for _, l := range []netlink.Link{eth, tap} {
		if l == nil {
			continue
		}
		q := &netlink.Ingress{QdiscAttrs: netlink.QdiscAttrs{
			LinkIndex: l.Attrs().Index,
			Handle:    netlink.MakeHandle(0xffff, 0),
			Parent:    netlink.HANDLE_INGRESS,
		}}
		// Deleting the ingress qdisc deletes its filters.
		if err := e.h.QdiscDel(q); err != nil && !errors.Is(err, unix.ENODEV) && !errors.Is(err, unix.EINVAL) &&
			!errors.Is(err, unix.ENOENT) {
			errs = append(errs, fmt.Errorf("remove ingress qdisc on %s: %w", l.Attrs().Name, err))
		}
	}
	return errors.Join(errs...)
}
