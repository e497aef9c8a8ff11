package wiring

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
)

// lldpGroupFwdMask lets a bridge forward 01:80:c2:00:00:0e (LLDP), which
// Linux bridges otherwise consume, so lessons that run LLDP see neighbours
// across a segment.
const lldpGroupFwdMask = 1 << 0x0e

// bridgeSegment is an L2 segment shared by more than two interfaces: a
// Linux bridge in the instance's fabric namespace with one veth per member,
// the member end named as planned inside its endpoint namespace.
type bridgeSegment struct {
	s *Segment
}

func (s *bridgeSegment) prepare(a *applier, b *batch) error {
	seg := s.s
	first := &a.p.Links[seg.Links[0]]
	br, err := a.fabricBridge(seg.Bridge, bridgeIndex0+seg.Index, seg.MTU)
	if err != nil {
		return linkError(first, fmt.Sprintf("segment %d: bridge %s", seg.Index, seg.Bridge))(err)
	}
	for k, m := range seg.Members {
		l := &a.p.Links[seg.Links[k/2]]
		env, idx := a.endEnv(m)
		a.fabricPort(b, linkError(l, fmt.Sprintf("segment %d: connect %s.%s", seg.Index, m.Endpoint, m.Interface)), fabricPort{
			port: segmentPort(seg.Index, k), portIndex: portIndex0 + 2*l.Index + k%2, master: br, mtu: seg.MTU,
			env: env, ifname: m.Interface, ifIndex: idx,
		})
	}
	return nil
}

// fabricBridge makes a bridge in the fabric namespace unless it exists, and
// returns its index. Bridges forward LLDP and run no STP, so ports forward
// at once.
func (a *applier) fabricBridge(name string, index, mtu int) (int, error) {
	fab := a.envs[a.fabric]
	if fab.has(name) {
		return fab.existing[name].Attrs().Index, nil
	}
	if a.fabH == nil {
		h, err := netlink.NewHandleAt(fab.fd)
		if err != nil {
			return 0, fmt.Errorf("fabric namespace: %w", err)
		}
		a.fabH = h
	}
	mask := uint16(lldpGroupFwdMask)
	la := netlink.NewLinkAttrs()
	la.Name, la.Index, la.MTU, la.Flags = name, fab.planned(index), mtu, net.FlagUp
	br := &netlink.Bridge{LinkAttrs: la, GroupFwdMask: &mask}
	if err := a.fabH.LinkAdd(br); err != nil {
		return 0, err
	}
	if fab.existing != nil {
		fab.existing[name] = br
	}
	return br.Attrs().Index, nil
}

// fabricPort is a veth from a bridge in the fabric namespace to an
// interface in an endpoint namespace.
type fabricPort struct {
	port      string // name in the fabric namespace
	portIndex int    // planned index there
	master    int    // bridge index
	mtu       int
	env       *nsEnv // endpoint namespace
	ifname    string // name there
	ifIndex   int    // planned index there
}

// fabricPort queues the veth unless both ends exist (removing a stray end).
func (a *applier) fabricPort(b *batch, wrap func(error) error, fp fabricPort) {
	fab := a.envs[a.fabric]
	if fab.has(fp.port) && fp.env.has(fp.ifname) {
		return
	}
	if err := errors.Join(fab.del(fp.port), fp.env.del(fp.ifname)); err != nil {
		b.fail(wrap(fmt.Errorf("remove stray end: %w", err)))
		return
	}
	ps := linkSpec{name: fp.port, index: fab.planned(fp.portIndex), mtu: fp.mtu, netns: int(fab.fd), master: fp.master}
	if ps.index == 0 {
		// Without the port's index the kernel ignores the member's.
		fp.env.mustRefresh = true
	}
	b.add(wrap, newVethReq(ps, linkSpec{name: fp.ifname, index: fp.env.planned(fp.ifIndex), mtu: fp.mtu, netns: int(fp.env.fd)}))
}

// configureFabric brings the fabric's bridges and ports up (when the
// namespace existed before) and turns off TX checksum offload on the ports.
func (a *applier) configureFabric() error {
	fab := a.envs[a.fabric]
	wrap := func(what string) func(error) error {
		return func(err error) error {
			return fmt.Errorf("wiring: instance %s: fabric namespace %s: %s: %w", a.p.Instance, fab.name, what, err)
		}
	}
	type group struct {
		wrap  func(string) func(error) error
		names []string // bridge first
	}
	mgmt := group{wrap: wrap, names: []string{mgmtBridgeName, uplinkName}}
	for _, e := range a.eps {
		mgmt.names = append(mgmt.names, e.MgmtPort)
	}
	groups := []group{mgmt}
	for _, seg := range a.segs {
		first := &a.p.Links[seg.Links[0]]
		g := group{wrap: func(what string) func(error) error {
			return linkError(first, fmt.Sprintf("segment %d: %s", seg.Index, what))
		}, names: []string{seg.Bridge}}
		for k := range seg.Members {
			g.names = append(g.names, segmentPort(seg.Index, k))
		}
		groups = append(groups, g)
	}
	var b batch
	for _, g := range groups {
		if fab.existing != nil {
			for _, n := range g.names {
				idx, err := fab.index(n, 0)
				if err != nil {
					return g.wrap(n)(err)
				}
				b.add(g.wrap(n+" up"), setLinkReq(idx, 0))
			}
		}
		for _, n := range g.names[1:] {
			if err := txChecksum(fab.ioctl, n, false); err != nil {
				return g.wrap(n)(err)
			}
		}
	}
	return fab.rt.run(&b)
}
