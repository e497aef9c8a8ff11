package wiring

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// mgmtNetwork makes the management bridge in the fabric namespace, picks
// the management subnet (once per instance, under a machine-wide lock so
// concurrent Applies never pick the same /24) and joins the bridge to the
// host with the uplink veth, whose host end holds the subnet's first
// address. Only that one link lives in the host namespace: removing a
// hundred bridge ports from the host namespace costs the kernel an RCU
// grace period each, while whole namespaces go away in the background.
func (a *applier) mgmtNetwork(context.Context) error {
	fab := a.envs[a.fabric]
	br, err := a.fabricBridge(mgmtBridgeName, mgmtBridgeIndex, DefaultMTU)
	if err != nil {
		return fmt.Errorf("wiring: instance %s: management bridge: %w", a.p.Instance, err)
	}
	a.mgmtBr = br
	unlock, err := lockPool()
	if err != nil {
		return fmt.Errorf("wiring: instance %s: %w", a.p.Instance, err)
	}
	defer unlock()
	if !a.st.MgmtSubnet.IsValid() {
		subnet, err := a.chooseSubnet()
		if err != nil {
			return fmt.Errorf("wiring: instance %s: management subnet: %w", a.p.Instance, err)
		}
		a.st.MgmtSubnet, a.st.Gateway = subnet, subnet.Addr().Next()
	}
	a.st.Endpoints = a.st.Endpoints[:0]
	for _, e := range a.eps {
		es := EndpointNamespace{Name: e.Name, Namespace: e.Namespace, MgmtAddress: mgmtAddr(a.st.MgmtSubnet, e.Pos)}
		for _, i := range e.Interfaces {
			es.Interfaces = append(es.Interfaces, i.Name)
		}
		a.st.Endpoints = append(a.st.Endpoints, es)
	}
	if err := a.st.save(); err != nil {
		return err
	}
	uplinkErr := func(err error) error {
		if errors.Is(err, unix.EEXIST) {
			a.st.HostLinkMade = false
			_ = a.st.save()
			err = fmt.Errorf("%w: %v", ErrNameCollision, err)
		}
		return fmt.Errorf("wiring: instance %s: management uplink %s: %w", a.p.Instance, a.p.HostLink, err)
	}
	if _, ok := a.host.existing[a.p.HostLink]; !ok || !fab.has(uplinkName) {
		if err := errors.Join(a.host.del(a.p.HostLink), fab.del(uplinkName)); err != nil {
			return uplinkErr(err)
		}
		var b batch
		b.add(uplinkErr, newVethReq(
			linkSpec{name: uplinkName, index: fab.planned(uplinkIndex), mtu: DefaultMTU, netns: int(fab.fd), master: br},
			linkSpec{name: a.p.HostLink, mtu: DefaultMTU, netns: -1}))
		if err := a.host.rt.run(&b); err != nil {
			return err
		}
	}
	hl, err := a.hostH.LinkByName(a.p.HostLink)
	if err == nil {
		err = a.hostH.LinkSetUp(hl)
	}
	if err == nil && hl.Attrs().Alias != hostLinkAlias(a.p.Instance) {
		// Names the owner: Remove of another instance whose host link name
		// is the same (a 24-bit tag) leaves this one alone.
		err = a.hostH.LinkSetAlias(hl, hostLinkAlias(a.p.Instance))
	}
	if err == nil {
		gw := netip.PrefixFrom(a.st.Gateway, a.st.MgmtSubnet.Bits())
		if err = a.hostH.AddrReplace(hl, &netlink.Addr{IPNet: ipNet(gw)}); err != nil {
			err = fmt.Errorf("address %v: %w", gw, err)
		}
	}
	if err != nil {
		return uplinkErr(err)
	}
	return nil
}

// chooseSubnet returns the fixed MgmtSubnet, or the first /24 of the pool
// that overlaps no address or route of the host and no other instance's
// recorded subnet.
func (a *applier) chooseSubnet() (netip.Prefix, error) {
	used, err := a.usedPrefixes()
	if err != nil {
		return netip.Prefix{}, err
	}
	overlaps := func(p netip.Prefix) bool {
		for _, u := range used {
			if u.Overlaps(p) {
				return true
			}
		}
		return false
	}
	if s := a.l.MgmtSubnet; s.IsValid() {
		s = s.Masked()
		if !s.Addr().Is4() || s.Bits() > 24 {
			return netip.Prefix{}, fmt.Errorf("%w: MgmtSubnet %v: want an IPv4 prefix of /24 or shorter", ErrInvalidOptions, s)
		}
		if overlaps(s) {
			return netip.Prefix{}, fmt.Errorf("%w: MgmtSubnet %v overlaps an address or route of the host", ErrNameCollision, s)
		}
		return s, nil
	}
	pool := a.l.Pool
	if !pool.IsValid() {
		pool = netip.MustParsePrefix(DefaultPool)
	}
	pool = pool.Masked()
	if !pool.Addr().Is4() || pool.Bits() > 24 {
		return netip.Prefix{}, fmt.Errorf("%w: pool %v: want an IPv4 prefix of /24 or shorter", ErrInvalidOptions, pool)
	}
	n := 1 << (24 - pool.Bits())
	base := pool.Addr().As4()
	for i := range n {
		var c4 [4]byte
		binary.BigEndian.PutUint32(c4[:], binary.BigEndian.Uint32(base[:])+uint32(i)<<8)
		c := netip.PrefixFrom(netip.AddrFrom4(c4), 24)
		if !overlaps(c) {
			return c, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("%w: all %d /24s of %v are in use: tear down instances you no longer need, or set Local.Pool", ErrPoolExhausted, n, pool)
}

// usedPrefixes lists the host's IPv4 addresses and routes and the subnets
// other instances under the state root recorded for the same host namespace.
func (a *applier) usedPrefixes() ([]netip.Prefix, error) {
	var used []netip.Prefix
	addrs, err := a.hostH.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list host addresses: %w", err)
	}
	for _, ad := range addrs {
		if p, ok := prefixOf(ad.IPNet); ok {
			used = append(used, p.Masked())
		}
	}
	routes, err := a.hostH.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("list host routes: %w", err)
	}
	for _, r := range routes {
		if p, ok := prefixOf(r.Dst); ok && p.Bits() > 0 {
			used = append(used, p.Masked())
		}
	}
	dirs, _ := filepath.Glob(filepath.Join(filepath.Dir(a.st.Dir), "*", StateFile))
	for _, f := range dirs {
		if filepath.Dir(f) == a.st.Dir {
			continue
		}
		if other, err := LoadState(filepath.Dir(f)); err == nil && other.HostNetNS == a.l.HostNetNS && other.MgmtSubnet.IsValid() {
			used = append(used, other.MgmtSubnet)
		}
	}
	return used, nil
}

// lockPool takes the machine-wide management-pool lock.
func lockPool() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(poolLock), 0o755); err != nil {
		return nil, fmt.Errorf("pool lock: %w", err)
	}
	f, err := os.OpenFile(poolLock, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("pool lock: %w", err)
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("pool lock: %w", err)
	}
	return func() { f.Close() }, nil
}

func ipNet(p netip.Prefix) *net.IPNet {
	return &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())}
}

func prefixOf(n *net.IPNet) (netip.Prefix, bool) {
	if n == nil {
		return netip.Prefix{}, false
	}
	a, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	bits, _ := n.Mask.Size()
	return netip.PrefixFrom(a.Unmap(), bits), true
}

// mgmtLinks queues the eth0 veth of every endpoint that lacks one: eth0 in
// the endpoint's namespace, its peer a port of the management bridge.
func (a *applier) mgmtLinks(b *batch) {
	for _, e := range a.eps {
		wrap := func(err error) error {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("%w: %v", ErrNameCollision, err)
			}
			return &EndpointError{Endpoint: e.Name, Namespace: e.Namespace, Err: fmt.Errorf("eth0: %w", err)}
		}
		a.fabricPort(b, wrap, fabricPort{
			port: e.MgmtPort, portIndex: mgmtPortIndex0 + e.Pos, master: a.mgmtBr, mtu: DefaultMTU,
			env: a.envs[e.Namespace], ifname: "eth0", ifIndex: mgmtIfIndex,
		})
	}
}
