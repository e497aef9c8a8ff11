package endpoint

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
)

func triangleModel(t *testing.T) *Model {
	t.Helper()
	m, err := Build(lesson(t, triangle, triangleFiles()...), triangleImages())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// A link planned between a and c takes the lowest free ethN on each, the
// addressing rule of Build (c is listed first: .2) and MACs unique in the
// model; adding it gives both endpoints the interface, with the image's
// guest name where the image names that NIC.
func TestNewAndAddLink(t *testing.T) {
	m := triangleModel(t)
	s, err := m.NewLink("a", "c", netip.MustParsePrefix("10.99.0.7/24"), "inst")
	if err != nil {
		t.Fatal(err)
	}
	if s.A.Interface != "eth3" || s.B.Interface != "eth3" || s.Subnet.String() != "10.99.0.0/24" || s.MTU != DefaultMTU {
		t.Errorf("spec = %+v", s)
	}
	if s.A.Address.String() != "10.99.0.3/24" || s.B.Address.String() != "10.99.0.2/24" {
		t.Errorf("addresses a %v c %v; want c (listed first) .2, a .3", s.A.Address, s.B.Address)
	}
	seen := m.macs()
	for _, e := range []EndSpec{s.A, s.B} {
		if owner, dup := seen[e.MAC.String()]; dup || len(e.MAC) != 6 || e.MAC[0]&3 != 2 {
			t.Errorf("%s MAC %v (taken by %q)", e.Endpoint, e.MAC, owner)
		}
	}
	again, _ := m.NewLink("a", "c", netip.MustParsePrefix("10.99.0.0/24"), "inst")
	if fmt.Sprint(again) != fmt.Sprint(s) {
		t.Errorf("NewLink is not deterministic:\n%+v\n%+v", s, again)
	}
	l, err := m.AddLink(s, triangleImages())
	if err != nil {
		t.Fatal(err)
	}
	if l.Index != 3 || len(m.Links) != 4 || !l.Explicit || l.A != (LinkEnd{"a", "eth3"}) {
		t.Errorf("link = %+v", l)
	}
	it := m.Endpoint("c").Interface("eth3")
	if it == nil || it.Peer != "a" || it.PeerInterface != "eth3" || it.Link != 3 || it.Address != s.B.Address || it.GuestName != "eth3" {
		t.Errorf("c eth3 = %+v", it)
	}
	// Adding the same spec again is refused: the subnet, then the names
	// are in use now.
	if _, err := m.AddLink(s, nil); !errors.Is(err, ErrBadLink) || !strings.Contains(err.Error(), "overlaps 10.99.0.0/24 of link 3") {
		t.Errorf("second AddLink: %v", err)
	}
	s.Subnet, s.A.Address, s.B.Address = netip.Prefix{}, netip.Prefix{}, netip.Prefix{}
	if _, err := m.AddLink(s, nil); !errors.Is(err, ErrBadLink) || !strings.Contains(err.Error(), "already has an interface eth3") {
		t.Errorf("second AddLink: %v", err)
	}
	// Without a subnet: no addresses.
	s2, err := m.NewLink("b", "a", netip.Prefix{}, "inst")
	if err != nil || s2.A.Address.IsValid() || s2.B.Address.IsValid() || s2.A.Interface != "eth3" || s2.B.Interface != "eth4" {
		t.Errorf("NewLink without subnet = %+v, %v", s2, err)
	}
}

func TestNewLinkErrors(t *testing.T) {
	m := triangleModel(t)
	for _, tc := range []struct {
		a, b, subnet string
		want         error
		msg          string
	}{
		{"a", "zz", "", ErrNoEndpoint, `no such endpoint "zz" (endpoints: c, a, b)`},
		{"a", "a", "", ErrBadLink, "both ends on endpoint a"},
		{"a", "b", "10.1.0.0/25", ErrBadLink, "overlaps 10.1.0.0/24 of link 0 (a.eth1 ↔ b.eth1)"},
		{"a", "b", "10.2.0.0/31", ErrBadLink, "at most /30"},
		{"a", "b", "fd00:99::/64", ErrBadLink, "want an IPv4 prefix"},
	} {
		var p netip.Prefix
		if tc.subnet != "" {
			p = netip.MustParsePrefix(tc.subnet)
		}
		_, err := m.NewLink(tc.a, tc.b, p, "inst")
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("NewLink(%s, %s, %s) = %v; want %v containing %q", tc.a, tc.b, tc.subnet, err, tc.want, tc.msg)
		}
	}
	s, _ := m.NewLink("a", "b", netip.Prefix{}, "inst")
	s.B.MAC = m.Endpoint("c").ManagementMAC
	if _, err := m.AddLink(s, nil); !errors.Is(err, ErrBadLink) || !strings.Contains(err.Error(), "is c/eth0's") {
		t.Errorf("AddLink with a taken MAC: %v", err)
	}
}

// Removing a lesson link drops both interfaces and renumbers later links;
// the freed ethN is the next one a new link gets.
func TestRemoveLink(t *testing.T) {
	m := triangleModel(t)
	l, err := m.RemoveLink("b", "eth2") // link 1, b.eth2 ↔ c.eth1
	if err != nil {
		t.Fatal(err)
	}
	if l.Index != 1 || l.A != (LinkEnd{"b", "eth2"}) || l.B != (LinkEnd{"c", "eth1"}) {
		t.Errorf("removed %+v", l)
	}
	if len(m.Links) != 2 || m.Links[1].Index != 1 || m.Links[1].A != (LinkEnd{"a", "eth2"}) {
		t.Errorf("links after = %+v", m.Links)
	}
	if m.Endpoint("c").Interface("eth1") != nil || m.Endpoint("b").Interface("eth2") != nil {
		t.Error("the removed link's interfaces remain")
	}
	if it := m.Endpoint("c").Interface("eth2"); it == nil || it.Link != 1 {
		t.Errorf("c eth2 = %+v; want on link 1", it)
	}
	s, _ := m.NewLink("c", "b", netip.Prefix{}, "inst")
	if s.A.Interface != "eth1" || s.B.Interface != "eth2" {
		t.Errorf("after removal, a new link gets %s and %s; want the freed eth1 and eth2", s.A.Interface, s.B.Interface)
	}

	for _, tc := range []struct{ ep, iface, want string }{
		{"c", "eth0", "c:eth0: eth0 is its management interface (its links: eth2 (to a:eth2))"},
		{"c", "eth9", "c:eth9: it has no interface eth9"},
		{"b", "eth2", "b:eth2: it has no interface eth2 (its links: eth1 (to a:eth1))"},
	} {
		if _, err := m.RemoveLink(tc.ep, tc.iface); !errors.Is(err, ErrNotLink) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("RemoveLink(%s, %s) = %v; want ErrNotLink with %q", tc.ep, tc.iface, err, tc.want)
		}
	}
	if _, err := m.RemoveLink("zz", "eth1"); !errors.Is(err, ErrNoEndpoint) {
		t.Errorf("RemoveLink of an unknown endpoint: %v", err)
	}
}

func TestIfNumber(t *testing.T) {
	for name, want := range map[string]int{"eth1": 1, "eth12": 12, "eth0": 0, "eth": -1, "eth01": -1, "eth+1": -1, "swp1": -1, "eth1a": -1} {
		n, ok := ifNumber(name)
		if !ok {
			n = -1
		}
		if n != want {
			t.Errorf("ifNumber(%q) = %d, %v; want %d", name, n, ok, want)
		}
	}
}
