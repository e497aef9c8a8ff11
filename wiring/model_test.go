package wiring

import (
	"fmt"
	"net/netip"

	"github.com/endpointkit/endpointkit/endpoint"
)

// conn is one connection of a hand-built model.
type conn struct {
	a, b   string
	subnet string // "" for none
}

// buildModel makes an endpoint model the way the lesson builder does:
// interfaces eth1… per endpoint in connection order, addresses .2/.3 in
// endpoints order when the connection has a subnet (left empty when
// noAddrs, so the plan has to fill them in).
func buildModel(lesson string, endpoints []string, conns []conn, noAddrs bool) *endpoint.Model {
	m := &endpoint.Model{Lesson: lesson}
	pos := map[string]int{}
	for i, n := range endpoints {
		pos[n] = i
		m.Endpoints = append(m.Endpoints, endpoint.Endpoint{Name: n, Index: i, Image: "utility", Ports: []int{22, 80}})
	}
	for li, c := range conns {
		l := endpoint.Link{Index: li}
		var ifs [2]*endpoint.Interface
		for side, name := range []string{c.a, c.b} {
			ep := &m.Endpoints[pos[name]]
			ifc := endpoint.Interface{Name: fmt.Sprintf("eth%d", len(ep.Interfaces)+1), MTU: 1500, Link: li}
			ifc.GuestName = ifc.Name
			ep.Interfaces = append(ep.Interfaces, ifc)
			ifs[side] = &ep.Interfaces[len(ep.Interfaces)-1]
			end := endpoint.LinkEnd{Endpoint: name, Interface: ifc.Name}
			if side == 0 {
				l.A = end
			} else {
				l.B = end
			}
		}
		ifs[0].Peer, ifs[0].PeerInterface = c.b, ifs[1].Name
		ifs[1].Peer, ifs[1].PeerInterface = c.a, ifs[0].Name
		if c.subnet != "" {
			l.Subnet, l.Explicit = netip.MustParsePrefix(c.subnet), true
			if !noAddrs {
				first, second := ifs[0], ifs[1]
				if pos[c.b] < pos[c.a] {
					first, second = second, first
				}
				base := l.Subnet.Addr()
				first.Address = netip.PrefixFrom(base.Next().Next(), l.Subnet.Bits())
				second.Address = netip.PrefixFrom(base.Next().Next().Next(), l.Subnet.Bits())
			}
		} else {
			l.Subnet = netip.MustParsePrefix("169.0.0.0/16") // Antidote's default; no addresses
		}
		m.Links = append(m.Links, l)
	}
	return m
}

// triangle is antidote-core's validlesson1 topology with explicit subnets.
func triangle() *endpoint.Model {
	return buildModel("valid-lesson", []string{"foobar1", "foobar2", "foobar3"}, []conn{
		{"foobar1", "foobar2", "10.12.0.0/24"},
		{"foobar2", "foobar3", "10.23.0.0/24"},
		{"foobar3", "foobar1", "10.31.0.0/24"},
	}, false)
}
