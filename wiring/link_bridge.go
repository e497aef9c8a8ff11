package wiring

import (
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
	fab := a.envs[a.p.Fabric]
	first := &a.p.Links[seg.Links[0]]
	brIndex, err := fab.index(seg.Bridge, bridgeIndex0+seg.Index)
	if !fab.has(seg.Bridge) {
		h, herr := netlink.NewHandleAt(fab.fd)
		if herr != nil {
			return linkError(first, "fabric namespace")(herr)
		}
		defer h.Close()
		mask := uint16(lldpGroupFwdMask)
		la := netlink.NewLinkAttrs()
		la.Name, la.Index, la.MTU, la.Flags = seg.Bridge, fab.planned(bridgeIndex0+seg.Index), seg.MTU, net.FlagUp
		br := &netlink.Bridge{LinkAttrs: la, GroupFwdMask: &mask}
		if err := h.LinkAdd(br); err != nil {
			return linkError(first, fmt.Sprintf("segment %d: create bridge %s", seg.Index, seg.Bridge))(err)
		}
		if fab.existing != nil {
			fab.existing[seg.Bridge] = br
		}
		brIndex, err = br.Attrs().Index, nil
	}
	if err != nil {
		return linkError(first, fmt.Sprintf("segment %d", seg.Index))(err)
	}
	for k, m := range seg.Members {
		l := &a.p.Links[seg.Links[k/2]]
		port := segmentPort(seg.Index, k)
		env, idx := a.endEnv(m)
		if fab.has(port) && env.has(m.Interface) {
			continue
		}
		if err := fab.del(port); err != nil {
			return linkError(l, "remove stray port")(err)
		}
		if err := env.del(m.Interface); err != nil {
			return linkError(l, "remove stray end")(err)
		}
		ps := linkSpec{name: port, index: fab.planned(portIndex0 + 2*l.Index + k%2), mtu: seg.MTU, netns: int(fab.fd), master: brIndex}
		if ps.index == 0 {
			// Without the port's index the kernel ignores the member's.
			env.mustRefresh = true
		}
		b.add(linkError(l, fmt.Sprintf("segment %d: connect %s.%s", seg.Index, m.Endpoint, m.Interface)), newVethReq(
			ps, linkSpec{name: m.Interface, index: env.planned(idx), mtu: seg.MTU, netns: int(env.fd)}))
	}
	return nil
}

// configureFabric brings bridges and ports up (when the namespace existed)
// and turns off TX checksum offload on the ports.
func (a *applier) configureFabric() error {
	fab := a.envs[a.p.Fabric]
	var b batch
	for _, seg := range a.segs {
		first := &a.p.Links[seg.Links[0]]
		names := []string{seg.Bridge}
		for k := range seg.Members {
			names = append(names, segmentPort(seg.Index, k))
		}
		if fab.existing != nil {
			for _, n := range names {
				idx, err := fab.index(n, 0)
				if err != nil {
					return linkError(first, fmt.Sprintf("segment %d", seg.Index))(err)
				}
				b.add(linkError(first, fmt.Sprintf("segment %d: %s up", seg.Index, n)), setLinkReq(idx, 0))
			}
		}
		for _, n := range names[1:] {
			if err := txChecksum(fab.ioctl, n, false); err != nil {
				return linkError(first, fmt.Sprintf("segment %d", seg.Index))(err)
			}
		}
	}
	return fab.rt.run(&b)
}
