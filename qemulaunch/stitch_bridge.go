package qemulaunch

import (
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
)

// bridge stitches with a Linux bridge holding ethN and tapN. Its
// group_fwd_mask has bit 14 set so LLDP (01:80:c2:00:00:0e) is forwarded;
// the kernel refuses to forward LACP and STP (bits 0-2), so use mirred for
// those.
type bridge struct {
	name     string
	instance string
}

var _ stitcher = bridge{}

// lldpFwdMask is the group_fwd_mask bit for 01:80:c2:00:00:0e.
const lldpFwdMask = 1 << 0x0e

func (b bridge) stitch(e *netEnv, eth, tap netlink.Link) error {
	if err := e.removeStale(b.name, b.instance); err != nil {
		return err
	}
	mask := uint16(lldpFwdMask)
	attrs := netlink.NewLinkAttrs()
	attrs.Name = b.name
	attrs.MTU = eth.Attrs().MTU
	br := &netlink.Bridge{LinkAttrs: attrs, GroupFwdMask: &mask}
	if err := e.h.LinkAdd(br); err != nil {
		return privErr("create bridge "+b.name, err)
	}
	l, err := e.h.LinkByName(b.name)
	if err != nil {
		return fmt.Errorf("bridge %s: %w", b.name, err)
	}
	if err := e.h.LinkSetAlias(l, aliasPrefix+b.instance); err != nil {
		e.h.LinkDel(l)
		return fmt.Errorf("bridge %s: set alias: %w", b.name, err)
	}
	for _, port := range []netlink.Link{eth, tap} {
		if err := e.h.LinkSetMaster(port, l); err != nil {
			return fmt.Errorf("bridge %s: add port %s: %w", b.name, port.Attrs().Name, err)
		}
		if err := e.h.LinkSetUp(port); err != nil {
			return fmt.Errorf("bridge %s: port %s up: %w", b.name, port.Attrs().Name, err)
		}
	}
	if err := e.h.LinkSetUp(l); err != nil {
		return fmt.Errorf("bridge %s: up: %w", b.name, err)
	}
	return nil
}

func (b bridge) unstitch(e *netEnv, eth, tap netlink.Link) error {
	var errs []error
	if eth != nil {
		if err := e.h.LinkSetNoMaster(eth); err != nil {
			errs = append(errs, fmt.Errorf("release %s from %s: %w", eth.Attrs().Name, b.name, err))
		}
	}
	if l, err := e.h.LinkByName(b.name); err == nil {
		if err := e.h.LinkDel(l); err != nil {
			errs = append(errs, fmt.Errorf("delete bridge %s: %w", b.name, err))
		}
	}
	return errors.Join(errs...)
}
