package qemulaunch

import (
	"errors"
	"fmt"
	"strings"

	"github.com/endpointkit/endpointkit/internal/ethtool"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// aliasPrefix marks links this package created (IFLA_IFALIAS), so a later
// launch can remove what a crashed launcher left behind.
const aliasPrefix = "endpointkit:"

// createTAP makes a persistent, single-queue TAP named name with the given
// MTU, up, and marks it as owned by instance. QEMU later opens it by name
// (ifname=…); the flags match what QEMU asks for (no multi-queue), so the
// open never fails with EBUSY/EINVAL.
func (e *netEnv) createTAP(name, instance string, mtu int) (netlink.Link, error) {
	if err := e.removeStale(name, instance); err != nil {
		return nil, err
	}
	tap := &netlink.Tuntap{
		LinkAttrs: netlink.NewLinkAttrs(),
		Mode:      netlink.TUNTAP_MODE_TAP,
		Flags:     netlink.TUNTAP_ONE_QUEUE | netlink.TUNTAP_NO_PI | netlink.TUNTAP_VNET_HDR,
		Queues:    0, // the library opens one queue, sets persist, closes it
	}
	tap.Name = name
	// The tun device is created in the namespace of the thread that opens
	// /dev/net/tun, so this must run inside.
	if err := e.do(func() error { return netlink.LinkAdd(tap) }); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, fmt.Errorf("create TAP %s: /dev/net/tun missing (give the container the tun device): %w", name, err)
		}
		return nil, privErr("create TAP "+name, err)
	}
	l, err := e.h.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("TAP %s: %w", name, err)
	}
	if err := e.h.LinkSetAlias(l, aliasPrefix+instance); err != nil {
		e.h.LinkDel(l)
		return nil, fmt.Errorf("TAP %s: set alias: %w", name, err)
	}
	if mtu > 0 {
		if err := e.h.LinkSetMTU(l, mtu); err != nil {
			e.h.LinkDel(l)
			return nil, fmt.Errorf("TAP %s: set MTU %d: %w", name, mtu, err)
		}
	}
	if err := e.h.LinkSetUp(l); err != nil {
		e.h.LinkDel(l)
		return nil, fmt.Errorf("TAP %s: up: %w", name, err)
	}
	return e.h.LinkByName(name)
}

// removeStale deletes a link named name if an earlier launch of the same
// instance created it; a foreign link of that name is an error.
func (e *netEnv) removeStale(name, instance string) error {
	l, err := e.h.LinkByName(name)
	if err != nil {
		return nil // absent
	}
	if l.Attrs().Alias != aliasPrefix+instance {
		return fmt.Errorf("%w: %s already exists and was not created by instance %q; remove it or pick another name",
			ErrConfig, name, instance)
	}
	if err := e.h.LinkDel(l); err != nil {
		return fmt.Errorf("remove stale %s: %w", name, err)
	}
	return nil
}

// disableTXChecksum turns off TX checksum offload on a link (the ethtool
// ioctl, as `ethtool -K DEV tx off`). Frames the guest sends with a partial
// checksum (virtio's offload) then get a complete checksum in software
// before they leave the container interface; otherwise peers that do not
// trust partial checksums (another VM's emulated NIC, anything behind a
// tunnel) drop TCP and UDP while ping still works. The kernel here has no
// tc csum action, so this is done on the device.
func (e *netEnv) disableTXChecksum(name string) error {
	return e.do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := ethtool.SetTXChecksum(fd, name, false); err != nil {
			return fmt.Errorf("%s: disable TX checksum offload: %w", name, err)
		}
		return nil
	})
}

// ownedLinks lists links this package created for instance.
func (e *netEnv) ownedLinks(instance string) ([]string, error) {
	all, err := e.linkList()
	var out []string
	for _, l := range all {
		if strings.EqualFold(l.Attrs().Alias, aliasPrefix+instance) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, err
}
