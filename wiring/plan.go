package wiring

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"

	"github.com/endpointkit/endpointkit/endpoint"
)

// Kind is a link variant.
type Kind string

// Link kinds. See the package documentation for when each is chosen.
const (
	KindVeth   Kind = "veth"   // point-to-point pair between two endpoint namespaces
	KindBridge Kind = "bridge" // member of a bridge segment shared by more than two interfaces
	KindVXLAN  Kind = "vxlan"  // point-to-point across hosts
)

// Defaults.
const (
	DefaultMTU       = 1500
	DefaultVXLANPort = 4789
	minMTU, maxMTU   = 68, 65535
	// maxEndpointsPerHost is what one management /24 holds (.2 to .254).
	maxEndpointsPerHost = 253
)

// Options shape a plan. The zero value plus an Instance plans a single-host
// lesson.
type Options struct {
	// Instance names this running copy of the lesson (required): lower-case
	// letters, digits and inner dashes. Every resource name derives from it.
	Instance string
	// MTU applies to links whose model gives none; 0 means 1500.
	MTU int
	// Placement maps endpoint names to host names; endpoints not listed are
	// on host "". Links between endpoints on different hosts become VXLAN.
	Placement map[string]string
	// Underlay is each host's VXLAN tunnel address; needed for every host
	// with a VXLAN link end.
	Underlay map[string]netip.Addr
	// VNIBase is the VXLAN network identifier of link 0 (link i uses
	// VNIBase+i); 0 derives one from the instance name.
	VNIBase uint32
	// VXLANPort is the UDP destination port; 0 means 4789.
	VXLANPort int
	// Publish lists endpoint ports to publish on the host's addresses.
	Publish []Publish
}

// Publish asks for a DNAT from a host port to an endpoint's management
// address.
type Publish struct {
	Endpoint string `json:"endpoint"`
	Port     int    `json:"port"`               // endpoint port; must be one the endpoint declares
	HostPort int    `json:"hostPort,omitempty"` // 0: a free port is chosen at Apply
	Proto    string `json:"proto"`              // "tcp" (default) or "udp"
}

// Plan is what the runtime builds for one lesson instance: pure data,
// printable (String) and JSON-encodable.
type Plan struct {
	Instance string `json:"instance"`
	Lesson   string `json:"lesson"`
	// HostLink is the one link in the host namespace: the host's end of the
	// uplink to the management bridge (ek<tag>, tag a hash of Instance).
	HostLink string `json:"hostLink"`
	// Fabric is the namespace holding the management bridge and the bridge
	// segments of the default host; see FabricNamespace.
	Fabric    string         `json:"fabricNamespace"`
	NFTable   string         `json:"nftTable"`
	VXLANPort int            `json:"vxlanPort,omitempty"`
	Endpoints []EndpointPlan `json:"endpoints"`
	Links     []LinkPlan     `json:"links"`
	Segments  []Segment      `json:"segments,omitempty"`
	Publish   []Publish      `json:"publish,omitempty"`
	// Underlay is copied from Options for the hosts that need it.
	Underlay map[string]netip.Addr `json:"underlay,omitempty"`
}

// EndpointPlan is one endpoint's namespace and interfaces.
type EndpointPlan struct {
	Name string `json:"name"`
	// Pos is the endpoint's position in the plan; its management address is
	// .(Pos+2) of its host's management subnet.
	Pos              int             `json:"pos"`
	Host             string          `json:"host,omitempty"`
	Namespace        string          `json:"namespace"`
	MgmtPort         string          `json:"mgmtPort"` // eth0's peer on the management bridge
	Ports            []int           `json:"ports,omitempty"`
	EnableForwarding bool            `json:"enableForwarding,omitempty"`
	Interfaces       []InterfacePlan `json:"interfaces"`
}

// InterfacePlan is one data-plane interface inside an endpoint namespace.
type InterfacePlan struct {
	Name    string       `json:"name"`
	Link    int          `json:"link"`
	MTU     int          `json:"mtu"`
	Address netip.Prefix `json:"address,omitzero"`
}

// End is one end of a link.
type End struct {
	Endpoint  string       `json:"endpoint"`
	Interface string       `json:"interface"`
	Address   netip.Prefix `json:"address,omitzero"`
}

// LinkPlan is one lesson connection: a.ethI ↔ b.ethJ.
type LinkPlan struct {
	Index  int          `json:"index"`
	Kind   Kind         `json:"kind"`
	A      End          `json:"a"`
	B      End          `json:"b"`
	MTU    int          `json:"mtu"`
	Subnet netip.Prefix `json:"subnet,omitzero"` // only when the lesson gives one
	// Segment indexes Plan.Segments for KindBridge links.
	Segment int `json:"segment,omitempty"`
	// VNI, HostA and HostB are set for KindVXLAN links.
	VNI   uint32 `json:"vni,omitempty"`
	HostA string `json:"hostA,omitempty"`
	HostB string `json:"hostB,omitempty"`
}

// Segment is a Linux bridge in the fabric namespace joining every interface
// of the connections that share one explicit subnet.
type Segment struct {
	Index   int          `json:"index"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	MTU     int          `json:"mtu"`
	Host    string       `json:"host,omitempty"`
	Links   []int        `json:"links"`
	Members []End        `json:"members"`
}

// NewPlan derives the wiring of a lesson instance from its endpoint model.
// It is pure: it reads nothing but its arguments. Errors name the endpoint
// or link at fault and wrap [ErrInvalidModel] or [ErrInvalidOptions].
func NewPlan(m *endpoint.Model, opts Options) (*Plan, error) {
	if m == nil {
		return nil, fmt.Errorf("wiring: %w: no model", ErrInvalidModel)
	}
	if err := ValidInstance(opts.Instance); err != nil {
		return nil, fmt.Errorf("wiring: %w: %v", ErrInvalidOptions, err)
	}
	defMTU := opts.MTU
	if defMTU == 0 {
		defMTU = DefaultMTU
	}
	if defMTU < minMTU || defMTU > maxMTU {
		return nil, fmt.Errorf("wiring: %w: MTU %d outside %d..%d", ErrInvalidOptions, defMTU, minMTU, maxMTU)
	}
	n := newNames(opts.Instance)
	p := &Plan{
		Instance: opts.Instance,
		Lesson:   m.Lesson,
		HostLink: n.hostLink(),
		Fabric:   n.fabric(),
		NFTable:  n.nftTable(),
	}
	byName := map[string]int{}
	perHost := map[string]int{}
	for i, e := range m.Endpoints {
		if !labelRE.MatchString(e.Name) || len(e.Name) > 63 {
			return nil, fmt.Errorf("wiring: %w: endpoint %d: name %q is not a DNS label", ErrInvalidModel, i, e.Name)
		}
		if _, dup := byName[e.Name]; dup {
			return nil, fmt.Errorf("wiring: %w: endpoint %q appears twice", ErrInvalidModel, e.Name)
		}
		byName[e.Name] = i
		host := opts.Placement[e.Name]
		perHost[host]++
		if perHost[host] > maxEndpointsPerHost {
			return nil, fmt.Errorf("wiring: %w: endpoint %q: more than %d endpoints on host %q (one management /24 per host)", ErrInvalidModel, e.Name, maxEndpointsPerHost, host)
		}
		p.Endpoints = append(p.Endpoints, EndpointPlan{
			Name: e.Name, Pos: i, Host: host,
			Namespace:        n.namespace(e.Name),
			MgmtPort:         mgmtPort(i),
			Ports:            slices.Clone(e.Ports),
			EnableForwarding: e.EnableForwarding,
		})
	}
	for name, host := range opts.Placement {
		if _, ok := byName[name]; !ok {
			return nil, fmt.Errorf("wiring: %w: placement names endpoint %q, which the lesson does not have", ErrInvalidOptions, name)
		}
		if host != "" && (!labelRE.MatchString(host) || len(host) > 63) {
			return nil, fmt.Errorf("wiring: %w: placement of endpoint %q: host name %q is not a DNS label", ErrInvalidOptions, name, host)
		}
	}
	if err := p.planLinks(m, opts, defMTU, byName); err != nil {
		return nil, err
	}
	if err := p.planInterfaces(m, byName); err != nil {
		return nil, err
	}
	if err := p.planPublish(opts.Publish, byName); err != nil {
		return nil, err
	}
	return p, nil
}

// FabricNamespace is the fabric namespace of the named host: Fabric, with
// "@host" appended for a host other than the default "". (Hosts have their
// own namespaces anyway; the suffix lets stand-in hosts share a machine.)
func (p *Plan) FabricNamespace(host string) string {
	if host == "" {
		return p.Fabric
	}
	return p.Fabric + "@" + host
}

// planLinks turns connections into links, groups links that share an
// explicit subnet into bridge segments and gives cross-host links a VNI.
func (p *Plan) planLinks(m *endpoint.Model, opts Options, defMTU int, byName map[string]int) error {
	ifaceOf := func(ep string, link int) (endpoint.Interface, bool) {
		for _, ifc := range m.Endpoints[byName[ep]].Interfaces {
			if ifc.Link == link {
				return ifc, true
			}
		}
		return endpoint.Interface{}, false
	}
	bySubnet := map[netip.Prefix][]int{}
	vniBase := opts.VNIBase
	if vniBase == 0 {
		sum := sha256.Sum256([]byte("endpointkit/vni/" + opts.Instance))
		// 4096-aligned blocks below 2^24 leave room for 4096 links.
		vniBase = 4096 * (1 + binary.BigEndian.Uint32(sum[:4])%4094)
	}
	for i, l := range m.Links {
		where := fmt.Sprintf("link %d (%s.%s ↔ %s.%s)", i, l.A.Endpoint, l.A.Interface, l.B.Endpoint, l.B.Interface)
		lp := LinkPlan{Index: i, Kind: KindVeth}
		for side, e := range []endpoint.LinkEnd{l.A, l.B} {
			if _, ok := byName[e.Endpoint]; !ok {
				return fmt.Errorf("wiring: %w: %s: endpoint %q does not exist", ErrInvalidModel, where, e.Endpoint)
			}
			if err := validIfName(e.Interface); err != nil {
				return fmt.Errorf("wiring: %w: %s: %v", ErrInvalidModel, where, err)
			}
			if e.Interface == "eth0" || e.Interface == "lo" {
				return fmt.Errorf("wiring: %w: %s: %s is reserved (eth0 is the management interface)", ErrInvalidModel, where, e.Interface)
			}
			end := End{Endpoint: e.Endpoint, Interface: e.Interface}
			mtu := l.MTU
			if ifc, ok := ifaceOf(e.Endpoint, i); ok {
				end.Address = ifc.Address
				if mtu == 0 {
					mtu = ifc.MTU
				}
			}
			if mtu != 0 && lp.MTU != 0 && mtu != lp.MTU {
				return fmt.Errorf("wiring: %w: %s: ends disagree on MTU (%d, %d)", ErrInvalidModel, where, lp.MTU, mtu)
			}
			if mtu != 0 {
				lp.MTU = mtu
			}
			if side == 0 {
				lp.A = end
			} else {
				lp.B = end
			}
		}
		if lp.MTU == 0 {
			lp.MTU = defMTU
		}
		if lp.MTU < minMTU || lp.MTU > maxMTU {
			return fmt.Errorf("wiring: %w: %s: MTU %d outside %d..%d", ErrInvalidModel, where, lp.MTU, minMTU, maxMTU)
		}
		if l.A.Endpoint == l.B.Endpoint && l.A.Interface == l.B.Interface {
			return fmt.Errorf("wiring: %w: %s: both ends are the same interface", ErrInvalidModel, where)
		}
		if l.Explicit {
			if !l.Subnet.IsValid() || !l.Subnet.Addr().Is4() || l.Subnet.Bits() > 30 {
				return fmt.Errorf("wiring: %w: %s: subnet %v: want an IPv4 prefix of at most /30", ErrInvalidModel, where, l.Subnet)
			}
			lp.Subnet = l.Subnet.Masked()
			bySubnet[lp.Subnet] = append(bySubnet[lp.Subnet], i)
		}
		ha, hb := opts.Placement[l.A.Endpoint], opts.Placement[l.B.Endpoint]
		if ha != hb {
			lp.Kind, lp.HostA, lp.HostB = KindVXLAN, ha, hb
			if i >= 4096 && opts.VNIBase == 0 {
				return fmt.Errorf("wiring: %w: %s: more than 4096 links; set Options.VNIBase", ErrInvalidOptions, where)
			}
			lp.VNI = vniBase + uint32(i)
			if lp.VNI >= 1<<24 {
				return fmt.Errorf("wiring: %w: %s: VNI %d exceeds 24 bits", ErrInvalidOptions, where, lp.VNI)
			}
			for _, h := range []string{ha, hb} {
				a, ok := opts.Underlay[h]
				if !ok || !a.IsValid() {
					return fmt.Errorf("wiring: %w: %s crosses hosts: no underlay address for host %q in Options.Underlay", ErrInvalidOptions, where, h)
				}
				if p.Underlay == nil {
					p.Underlay = map[string]netip.Addr{}
				}
				p.Underlay[h] = a
			}
			p.VXLANPort = opts.VXLANPort
			if p.VXLANPort == 0 {
				p.VXLANPort = DefaultVXLANPort
			}
		}
		p.Links = append(p.Links, lp)
	}
	if err := p.checkInterfaceUse(); err != nil {
		return err
	}
	// Segments: explicit subnets shared by two or more connections, in the
	// order of their first connection.
	for i := range p.Links {
		l := &p.Links[i]
		group := bySubnet[l.Subnet]
		if !l.Subnet.IsValid() || len(group) < 2 || group[0] != i {
			continue
		}
		seg := Segment{Index: len(p.Segments), Bridge: segmentBridge(len(p.Segments)), Subnet: l.Subnet, MTU: l.MTU, Links: group}
		host := opts.Placement[l.A.Endpoint]
		for _, li := range group {
			m := &p.Links[li]
			if m.Kind == KindVXLAN || opts.Placement[m.A.Endpoint] != host {
				return fmt.Errorf("wiring: %w: link %d shares subnet %v with link %d but the segment would span hosts; give it its own subnet", ErrInvalidModel, li, l.Subnet, i)
			}
			if m.MTU != seg.MTU {
				return fmt.Errorf("wiring: %w: link %d shares subnet %v with link %d but has MTU %d, not %d", ErrInvalidModel, li, l.Subnet, i, m.MTU, seg.MTU)
			}
			m.Kind, m.Segment = KindBridge, seg.Index
		}
		seg.Host = host
		p.Segments = append(p.Segments, seg)
	}
	return p.planAddresses(byName)
}

// checkInterfaceUse rejects an interface name used by two links of one
// endpoint.
func (p *Plan) checkInterfaceUse() error {
	seen := map[[2]string]int{}
	for _, l := range p.Links {
		for _, e := range []End{l.A, l.B} {
			k := [2]string{e.Endpoint, e.Interface}
			if prev, dup := seen[k]; dup {
				return fmt.Errorf("wiring: %w: endpoint %q: interface %s is on link %d and link %d", ErrInvalidModel, e.Endpoint, e.Interface, prev, l.Index)
			}
			seen[k] = l.Index
		}
	}
	return nil
}

// planAddresses checks the model's addresses and fills in missing ones for
// links with an explicit subnet, the way antidote-core's host-local IPAM
// did: per L2 network, .1 reserved (unless the subnet is too small to spare
// it), then .2, .3, … in endpoints order. A segment whose model addresses
// repeat (each connection numbered on its own) is numbered as a whole.
func (p *Plan) planAddresses(byName map[string]int) error {
	type network struct {
		subnet  netip.Prefix
		ends    []*End
		where   string
		segment bool
	}
	var nets []network
	segNet := map[int]int{} // segment index → index in nets
	for i := range p.Links {
		l := &p.Links[i]
		if !l.Subnet.IsValid() {
			for _, e := range []*End{&l.A, &l.B} {
				if e.Address.IsValid() {
					return fmt.Errorf("wiring: %w: link %d: %s.%s has address %v but the connection gives no subnet", ErrInvalidModel, i, e.Endpoint, e.Interface, e.Address)
				}
			}
			continue
		}
		if l.Kind == KindBridge {
			if k, ok := segNet[l.Segment]; ok {
				nets[k].ends = append(nets[k].ends, &l.A, &l.B)
				continue
			}
			segNet[l.Segment] = len(nets)
			nets = append(nets, network{subnet: l.Subnet, ends: []*End{&l.A, &l.B}, where: fmt.Sprintf("segment %d", l.Segment), segment: true})
			continue
		}
		nets = append(nets, network{subnet: l.Subnet, ends: []*End{&l.A, &l.B}, where: fmt.Sprintf("link %d", i)})
	}
	for _, nw := range nets {
		if nw.segment && duplicateAddrs(nw.ends) {
			// The endpoint builder numbers each connection on its own, so
			// connections sharing a subnet repeat .2 and .3: number the
			// whole segment instead.
			for _, e := range nw.ends {
				e.Address = netip.Prefix{}
			}
		}
		used := map[netip.Addr]string{}
		for _, e := range nw.ends {
			if !e.Address.IsValid() {
				continue
			}
			a := e.Address.Addr()
			if e.Address.Bits() != nw.subnet.Bits() || !nw.subnet.Contains(a) || a == nw.subnet.Addr() || a == lastAddr(nw.subnet) {
				return fmt.Errorf("wiring: %w: %s: %s.%s: address %v is not a host address of %v", ErrInvalidModel, nw.where, e.Endpoint, e.Interface, e.Address, nw.subnet)
			}
			if other, dup := used[a]; dup {
				return fmt.Errorf("wiring: %w: %s: %s.%s and %s both have address %v", ErrInvalidModel, nw.where, e.Endpoint, e.Interface, other, a)
			}
			used[a] = e.Endpoint + "." + e.Interface
		}
		missing := slices.DeleteFunc(slices.Clone(nw.ends), func(e *End) bool { return e.Address.IsValid() })
		slices.SortStableFunc(missing, func(x, y *End) int { return byName[x.Endpoint] - byName[y.Endpoint] })
		// .1 is the reserved gateway, as with host-local, unless the subnet
		// is too small to spare it (a /30 between two ends).
		next := nw.subnet.Addr().Next()
		if hosts := 1<<(32-nw.subnet.Bits()) - 2; hosts-1 >= len(nw.ends) {
			next = next.Next()
		}
		for _, e := range missing {
			for used[next] != "" {
				next = next.Next()
			}
			if !nw.subnet.Contains(next) || next == lastAddr(nw.subnet) {
				return fmt.Errorf("wiring: %w: %s: subnet %v has no address left for %s.%s", ErrInvalidModel, nw.where, nw.subnet, e.Endpoint, e.Interface)
			}
			e.Address = netip.PrefixFrom(next, nw.subnet.Bits())
			used[next] = e.Endpoint + "." + e.Interface
		}
	}
	for si := range p.Segments {
		s := &p.Segments[si]
		for _, li := range s.Links {
			s.Members = append(s.Members, p.Links[li].A, p.Links[li].B)
		}
	}
	return nil
}

func duplicateAddrs(ends []*End) bool {
	seen := map[netip.Addr]bool{}
	for _, e := range ends {
		if a := e.Address.Addr(); e.Address.IsValid() {
			if seen[a] {
				return true
			}
			seen[a] = true
		}
	}
	return false
}

// planInterfaces lists each endpoint's data interfaces in link order.
func (p *Plan) planInterfaces(m *endpoint.Model, byName map[string]int) error {
	for _, l := range p.Links {
		for _, e := range []End{l.A, l.B} {
			ep := &p.Endpoints[byName[e.Endpoint]]
			ep.Interfaces = append(ep.Interfaces, InterfacePlan{Name: e.Interface, Link: l.Index, MTU: l.MTU, Address: e.Address})
		}
	}
	// Model interfaces that no link mentions are a model inconsistency.
	for _, e := range m.Endpoints {
		for _, ifc := range e.Interfaces {
			if ifc.Link < 0 || ifc.Link >= len(p.Links) {
				return fmt.Errorf("wiring: %w: endpoint %q: interface %s refers to link %d, which does not exist", ErrInvalidModel, e.Name, ifc.Name, ifc.Link)
			}
		}
	}
	return nil
}

func (p *Plan) planPublish(pubs []Publish, byName map[string]int) error {
	seen := map[string]bool{}
	for _, pb := range pubs {
		if pb.Proto == "" {
			pb.Proto = "tcp"
		}
		i, ok := byName[pb.Endpoint]
		if !ok {
			return fmt.Errorf("wiring: %w: publish: endpoint %q does not exist", ErrInvalidOptions, pb.Endpoint)
		}
		if pb.Proto != "tcp" && pb.Proto != "udp" {
			return fmt.Errorf("wiring: %w: publish %s port %d: protocol %q is not tcp or udp", ErrInvalidOptions, pb.Endpoint, pb.Port, pb.Proto)
		}
		if !slices.Contains(p.Endpoints[i].Ports, pb.Port) {
			return fmt.Errorf("wiring: %w: publish %s port %d: the endpoint does not declare that port (add it to the lesson's additionalPorts)", ErrInvalidOptions, pb.Endpoint, pb.Port)
		}
		if pb.HostPort < 0 || pb.HostPort > 65535 {
			return fmt.Errorf("wiring: %w: publish %s port %d: host port %d out of range", ErrInvalidOptions, pb.Endpoint, pb.Port, pb.HostPort)
		}
		key := fmt.Sprintf("%s/%d", pb.Proto, pb.HostPort)
		if pb.HostPort != 0 && seen[key] {
			return fmt.Errorf("wiring: %w: publish %s port %d: host port %s used twice", ErrInvalidOptions, pb.Endpoint, pb.Port, key)
		}
		seen[key] = true
		p.Publish = append(p.Publish, pb)
	}
	return nil
}

// lastAddr is the broadcast address of an IPv4 prefix.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Masked().Addr().As4()
	v := binary.BigEndian.Uint32(a[:]) | (1<<(32-p.Bits()) - 1)
	binary.BigEndian.PutUint32(a[:], v)
	return netip.AddrFrom4(a)
}

// endpoint returns the plan of the named endpoint.
func (p *Plan) endpoint(name string) *EndpointPlan {
	for i := range p.Endpoints {
		if p.Endpoints[i].Name == name {
			return &p.Endpoints[i]
		}
	}
	return nil
}
