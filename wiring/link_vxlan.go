package wiring

import (
	"net"

	"github.com/vishvananda/netlink"
)

// vxlanLink is this host's end of a link to an endpoint on another host: a
// VXLAN device named as the planned interface, inside the endpoint's
// namespace. It is created through the host namespace's netlink socket, so
// its UDP tunnel socket stays in the host namespace (the underlay) while the
// device itself lives with the endpoint. Each host applies its own end; the
// two ends agree on the VNI and point at each other's underlay address.
// The underlay must carry the link MTU plus 50 bytes of VXLAN overhead.
type vxlanLink struct {
	l             *LinkPlan
	end           End
	local, remote string // host names
}

func (v *vxlanLink) prepare(a *applier, _ *batch) error {
	env, idx := a.endEnv(v.end)
	if env.has(v.end.Interface) {
		return nil
	}
	la := netlink.NewLinkAttrs()
	la.Name, la.Index, la.MTU, la.Flags = v.end.Interface, env.planned(idx), v.l.MTU, net.FlagUp
	la.Namespace = netlink.NsFd(env.fd)
	vx := &netlink.Vxlan{
		LinkAttrs: la,
		VxlanId:   int(v.l.VNI),
		SrcAddr:   a.p.Underlay[v.local].AsSlice(),
		Group:     a.p.Underlay[v.remote].AsSlice(), // unicast: the peer VTEP
		Port:      a.p.VXLANPort,
		Learning:  true,
	}
	if err := a.hostH.LinkAdd(vx); err != nil {
		return linkError(v.l, "create vxlan end "+v.end.Endpoint+"."+v.end.Interface)(err)
	}
	return nil
}
