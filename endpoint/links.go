package endpoint

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Live topology: the links of a running lesson instance change (`lesson
// link add`, `lesson link del`). The model of such an instance is its
// lesson's model with the instance's link changes applied — RemoveLink for
// each lesson link it removed, AddLink for each link it added — so that
// the wiring plan, the launches and the configuration of a restarted
// endpoint all follow from one model, as at Up.

// Errors of the link changes; each wraps one of these and names the
// endpoint, interface or link.
var (
	// ErrNoEndpoint: the model has no endpoint of that name.
	ErrNoEndpoint = errors.New("no such endpoint")
	// ErrNotLink: the interface is not one end of a link (it does not
	// exist, or it is the management interface).
	ErrNotLink = errors.New("not a link")
	// ErrBadLink: a link cannot be added as given (same endpoint at both
	// ends, a subnet that is not a usable IPv4 prefix or is another link's,
	// an interface name or MAC in use).
	ErrBadLink = errors.New("link cannot be added")
)

// LinkSpec is a link added to a model after Build, with everything its
// interfaces get, so that adding it again (when a restarted endpoint is
// placed anew, or in another process) gives the same interfaces. NewLink
// makes one; AddLink applies it.
type LinkSpec struct {
	A, B EndSpec
	// Subnet is the link's subnet; the zero Prefix plans no addresses.
	Subnet netip.Prefix
	MTU    int
}

// EndSpec is one end of a LinkSpec: the endpoint, the container-side
// interface name (ethN), the guest NIC's MAC and the planned address
// (invalid without a subnet).
type EndSpec struct {
	Endpoint  string
	Interface string
	MAC       net.HardwareAddr
	Address   netip.Prefix
}

// NewLink plans a link between endpoints a and b as Build would cable a
// further connection: on each endpoint the lowest ethN (N ≥ 1) it does not
// use, MACs derived from seed (the instance name, or the lesson's slug)
// and unique in the model, the MTU of the model's links. With a subnet
// (an IPv4 prefix of at most /30 that no other link of the model uses) the
// end listed first in the lesson's endpoints gets the subnet's .2, the
// other .3, as Build numbers lesson connections. It changes nothing.
func (m *Model) NewLink(a, b string, subnet netip.Prefix, seed string) (LinkSpec, error) {
	ia, ib := m.endpointIndex(a), m.endpointIndex(b)
	for _, e := range []struct {
		name string
		i    int
	}{{a, ia}, {b, ib}} {
		if e.i < 0 {
			return LinkSpec{}, m.noEndpoint(e.name)
		}
	}
	if ia == ib {
		return LinkSpec{}, fmt.Errorf("endpoint: %w: both ends on endpoint %s; a link joins two endpoints", ErrBadLink, a)
	}
	s := LinkSpec{A: EndSpec{Endpoint: a, Interface: m.Endpoints[ia].freeInterface()},
		B: EndSpec{Endpoint: b, Interface: m.Endpoints[ib].freeInterface()}, MTU: DefaultMTU}
	if len(m.Links) > 0 && m.Links[0].MTU > 0 {
		s.MTU = m.Links[0].MTU
	}
	if subnet.IsValid() {
		s.Subnet = subnet.Masked()
		if err := m.checkSubnet(s.Subnet); err != nil {
			return LinkSpec{}, err
		}
		first, second := nthAddr(s.Subnet, 2), nthAddr(s.Subnet, 3)
		if ia > ib {
			first, second = second, first
		}
		s.A.Address, s.B.Address = first, second
	}
	b2 := &builder{m: m, instance: seed, macs: m.macs()}
	s.A.MAC = b2.mac(a, s.A.Interface)
	s.B.MAC = b2.mac(b, s.B.Interface)
	return s, nil
}

// AddLink adds the link s to the model: a Link at the end of Links and an
// Interface on each endpoint, its guest name the image's networkInterfaces
// entry for that ethN (images may be nil: the container name). s must fit
// the model as it is now (NewLink's checks, and MACs no other interface
// has); the error wraps ErrNoEndpoint or ErrBadLink.
func (m *Model) AddLink(s LinkSpec, images Images) (Link, error) {
	if err := m.checkSpec(s); err != nil {
		return Link{}, err
	}
	link := Link{Index: len(m.Links), A: LinkEnd{s.A.Endpoint, s.A.Interface}, B: LinkEnd{s.B.Endpoint, s.B.Interface},
		Subnet: s.Subnet, Explicit: s.Subnet.IsValid(), MTU: s.MTU}
	for _, e := range []struct{ me, peer EndSpec }{{s.A, s.B}, {s.B, s.A}} {
		ep := m.Endpoint(e.me.Endpoint)
		guest := e.me.Interface
		if n, ok := ifNumber(e.me.Interface); ok && images != nil {
			if im, err := images.Image(ep.Image); err == nil && n <= len(im.NetworkInterfaces) {
				guest = im.NetworkInterfaces[n-1]
			}
		}
		ep.Interfaces = append(ep.Interfaces, Interface{Name: e.me.Interface, GuestName: guest, MAC: slices.Clone(e.me.MAC),
			MTU: s.MTU, Link: link.Index, Peer: e.peer.Endpoint, PeerInterface: e.peer.Interface, Address: e.me.Address})
	}
	m.Links = append(m.Links, link)
	return link, nil
}

// checkSpec reports why s does not fit the model.
func (m *Model) checkSpec(s LinkSpec) error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("endpoint: %w: %s.%s ↔ %s.%s: %s", ErrBadLink, s.A.Endpoint, s.A.Interface, s.B.Endpoint, s.B.Interface, fmt.Sprintf(format, a...))
	}
	if s.A.Endpoint == s.B.Endpoint {
		return bad("both ends on endpoint %s", s.A.Endpoint)
	}
	if s.MTU < 68 || s.MTU > 65535 {
		return bad("MTU %d out of range (68-65535)", s.MTU)
	}
	if s.Subnet.IsValid() {
		if err := m.checkSubnet(s.Subnet); err != nil {
			return err
		}
	}
	macs := m.macs()
	for _, e := range []EndSpec{s.A, s.B} {
		ep := m.Endpoint(e.Endpoint)
		if ep == nil {
			return m.noEndpoint(e.Endpoint)
		}
		if n, ok := ifNumber(e.Interface); !ok || n < 1 {
			return bad("%s: interface %q: want ethN, N ≥ 1", e.Endpoint, e.Interface)
		}
		if ep.Interface(e.Interface) != nil {
			return bad("%s already has an interface %s", e.Endpoint, e.Interface)
		}
		if len(e.MAC) != 6 || e.MAC[0]&1 != 0 {
			return bad("%s.%s: MAC %v is not a unicast Ethernet address", e.Endpoint, e.Interface, e.MAC)
		}
		if owner, taken := macs[e.MAC.String()]; taken {
			return bad("%s.%s: MAC %v is %s's", e.Endpoint, e.Interface, e.MAC, owner)
		}
		macs[e.MAC.String()] = e.Endpoint + "/" + e.Interface
		if e.Address.IsValid() != s.Subnet.IsValid() ||
			e.Address.IsValid() && (e.Address.Bits() != s.Subnet.Bits() || !s.Subnet.Contains(e.Address.Addr())) {
			return bad("%s.%s: address %v does not fit subnet %v", e.Endpoint, e.Interface, e.Address, s.Subnet)
		}
	}
	if s.A.Address.IsValid() && s.A.Address.Addr() == s.B.Address.Addr() {
		return bad("both ends have address %v", s.A.Address)
	}
	return nil
}

// checkSubnet refuses a subnet a link cannot have: not IPv4, longer than
// /30, or overlapping the subnet of a link of the model (a shared subnet
// would make the links one segment).
func (m *Model) checkSubnet(p netip.Prefix) error {
	if !p.Addr().Is4() || p.Bits() > 30 {
		return fmt.Errorf("endpoint: %w: subnet %v: want an IPv4 prefix of at most /30", ErrBadLink, p)
	}
	for _, l := range m.Links {
		if l.Explicit && l.Subnet.Overlaps(p) {
			return fmt.Errorf("endpoint: %w: subnet %v overlaps %v of link %d (%s.%s ↔ %s.%s); give the new link a subnet of its own",
				ErrBadLink, p, l.Subnet, l.Index, l.A.Endpoint, l.A.Interface, l.B.Endpoint, l.B.Interface)
		}
	}
	return nil
}

// RemoveLink removes the link whose end is interface iface of endpoint
// ep, with both its interfaces, and returns it as it was. Later links move
// down one index (Link.Index and Interface.Link follow). The error wraps
// ErrNoEndpoint, or ErrNotLink naming the endpoint's links.
func (m *Model) RemoveLink(ep, iface string) (Link, error) {
	e := m.Endpoint(ep)
	if e == nil {
		return Link{}, m.noEndpoint(ep)
	}
	it := e.Interface(iface)
	if it == nil {
		why := "it has no interface " + iface
		if iface == "eth0" {
			why = "eth0 is its management interface"
		}
		return Link{}, fmt.Errorf("endpoint: %w: %s:%s: %s (its links: %s)", ErrNotLink, ep, iface, why, e.describeLinks())
	}
	k := it.Link
	link := m.Links[k]
	m.Links = slices.Delete(m.Links, k, k+1)
	for i := k; i < len(m.Links); i++ {
		m.Links[i].Index = i
	}
	for ei := range m.Endpoints {
		ifs := m.Endpoints[ei].Interfaces[:0]
		for _, x := range m.Endpoints[ei].Interfaces {
			switch {
			case x.Link == k:
				continue
			case x.Link > k:
				x.Link--
			}
			ifs = append(ifs, x)
		}
		m.Endpoints[ei].Interfaces = ifs
	}
	return link, nil
}

// Interface returns the endpoint's data interface of that name, or nil.
func (e *Endpoint) Interface(name string) *Interface {
	for i := range e.Interfaces {
		if e.Interfaces[i].Name == name {
			return &e.Interfaces[i]
		}
	}
	return nil
}

// freeInterface is the lowest ethN (N ≥ 1) the endpoint does not use.
func (e *Endpoint) freeInterface() string {
	for n := 1; ; n++ {
		if name := "eth" + strconv.Itoa(n); e.Interface(name) == nil {
			return name
		}
	}
}

// describeLinks lists the endpoint's links as "eth1 (to r2:eth1), …".
func (e *Endpoint) describeLinks() string {
	if len(e.Interfaces) == 0 {
		return "none"
	}
	parts := make([]string, len(e.Interfaces))
	for i, it := range e.Interfaces {
		parts[i] = fmt.Sprintf("%s (to %s:%s)", it.Name, it.Peer, it.PeerInterface)
	}
	return strings.Join(parts, ", ")
}

// noEndpoint is the ErrNoEndpoint error for name.
func (m *Model) noEndpoint(name string) error {
	names := make([]string, len(m.Endpoints))
	for i, e := range m.Endpoints {
		names[i] = e.Name
	}
	return fmt.Errorf("endpoint: %w %q (endpoints: %s)", ErrNoEndpoint, name, strings.Join(names, ", "))
}

// macs maps every MAC of the model to its owner ("endpoint/interface").
func (m *Model) macs() map[string]string {
	out := map[string]string{}
	for _, e := range m.Endpoints {
		out[e.ManagementMAC.String()] = e.Name + "/eth0"
		for _, it := range e.Interfaces {
			out[it.MAC.String()] = e.Name + "/" + it.Name
		}
	}
	return out
}

// ifNumber is N of an interface named ethN.
func ifNumber(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "eth")
	if !ok || digits == "" || len(digits) > 4 || digits[0] == '0' && len(digits) > 1 ||
		strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, _ := strconv.Atoi(digits)
	return n, true
}
