package endpoint

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"

	"github.com/endpointkit/endpointkit/lessonmeta"
)

// DefaultMTU is the MTU of every data-plane interface and link unless
// Options.MTU says otherwise.
const DefaultMTU = 1500

// ErrFilesNotChecked is returned by Build for a lesson with configured
// endpoints whose config files were not resolved (it was validated without
// its directory; use lessonmeta.Load).
var ErrFilesNotChecked = errors.New("endpoint: the lesson's config files were not resolved")

// Images looks up image metadata by slug, returning an error wrapping
// lessonmeta.ErrNoImage for an unknown slug. lessonmeta.ImageDirs (a
// curriculum's images/ folder, or folders of built image directories, each
// holding an Antidote-compatible image.meta.yaml) implements it.
type Images interface {
	Image(slug string) (*lessonmeta.Image, error)
}

var _ Images = lessonmeta.ImageDirs(nil)

// Options tune Build. The zero value gives the defaults.
type Options struct {
	// MTU of the data-plane interfaces and links; 0 means DefaultMTU.
	MTU int
	// Instance is the name of the lesson instance the model is for; it
	// seeds the MACs, so that two instances of one lesson on one L2
	// segment never collide. "" means the lesson's slug (the default
	// instance name).
	Instance string
}

// Build derives the runtime model of a validated lesson's endpoints. images
// may be nil (every image is then unknown). See [Options.Build].
func Build(l *lessonmeta.Lesson, images Images) (*Model, error) {
	return Options{}.Build(l, images)
}

// Build derives the runtime model of a validated lesson's endpoints; it is
// pure (it only reads image metafiles through images) and deterministic:
//
//   - Image metadata (flavor, credentials, forwarding, guest interface
//     names) comes from images; an image it does not know leaves ImageKnown
//     false and adds a warning — the plan still works.
//   - Ports are the presentation ports, then additionalPorts, without
//     duplicates.
//   - Interfaces are numbered per endpoint in connection order: an
//     endpoint's first connection is eth1, its second eth2, … . GuestName is
//     the image's networkInterfaces entry at the same position, else Name.
//   - MACs are locally administered unicast addresses taken from
//     SHA-256("endpointkit-mac" NUL instance NUL endpoint NUL interface),
//     instance being Options.Instance, else the lesson's slug;
//     the management NIC uses the interface name "eth0". A collision inside
//     the lesson (never seen) is resolved by hashing again with a counter.
//   - With an explicit subnet, the connection end listed first in the
//     lesson's endpoints gets the subnet's 2nd address (.2), the other the
//     3rd (.3); .1 is the gateway, as antidote-core's host-local IPAM did.
//     Without one the link carries lessonmeta.DefaultSubnet and the
//     interfaces get no address.
//   - Stages holds, for each stage, the configuration method, the absolute
//     config file and the NAPALM driver.
func (o Options) Build(l *lessonmeta.Lesson, images Images) (*Model, error) {
	if l == nil {
		return nil, errors.New("endpoint: Build of a nil lesson")
	}
	mtu := o.MTU
	if mtu == 0 {
		mtu = DefaultMTU
	}
	if mtu < 68 || mtu > 65535 {
		return nil, fmt.Errorf("endpoint: MTU %d out of range (68-65535)", mtu)
	}
	m := &Model{Lesson: l.Slug, Dir: l.Dir, StageCount: len(l.Stages)}
	seed := o.Instance
	if seed == "" {
		seed = l.Slug
	}
	b := &builder{m: m, instance: seed, macs: map[string]string{}}
	metas := map[string]*lessonmeta.Image{}
	for i, le := range l.Endpoints {
		if le.ConfigurationType != lessonmeta.ConfigNone && !l.FilesChecked {
			return nil, fmt.Errorf("%w: endpoint %q is configured by %s", ErrFilesNotChecked, le.Name, le.ConfigurationType)
		}
		ep := Endpoint{Name: le.Name, Index: i, Image: le.Image}
		im, seen := metas[le.Image]
		if !seen {
			im = b.image(le.Image, images)
			metas[le.Image] = im
		}
		if im != nil {
			ep.ImageKnown = true
			ep.Flavor = string(im.Flavor)
			ep.EnableForwarding = im.EnableForwarding
			ep.Credentials = Credentials{SSHUser: im.SSHUser, SSHPassword: im.SSHPassword,
				ConfigUser: im.ConfigUser, ConfigPassword: im.ConfigPassword}
		}
		for _, p := range le.Presentations {
			ep.Presentations = append(ep.Presentations, Presentation{Name: p.Name, Port: p.Port, Type: PresentationType(p.Type)})
			ep.Ports = appendUnique(ep.Ports, p.Port)
		}
		for _, p := range le.AdditionalPorts {
			ep.Ports = appendUnique(ep.Ports, p)
		}
		ep.ManagementMAC = b.mac(le.Name, "eth0")
		for s := range l.Stages {
			sc := StageConfig{Stage: s, Method: Method(le.ConfigurationType)}
			if s < len(le.Configs) {
				sc.File, sc.Driver = le.Configs[s].Path, le.Configs[s].Driver
			}
			ep.Stages = append(ep.Stages, sc)
		}
		m.Endpoints = append(m.Endpoints, ep)
	}
	for _, c := range l.Connections {
		ia, ib := m.endpointIndex(c.A), m.endpointIndex(c.B)
		if ia < 0 || ib < 0 || ia == ib {
			return nil, fmt.Errorf("endpoint: connection %d (%s-%s) does not join two endpoints of the lesson; validate the lesson first", c.Index, c.A, c.B)
		}
		link := Link{Index: len(m.Links), Subnet: c.Subnet, Explicit: c.SubnetExplicit, MTU: mtu}
		nameA := "eth" + strconv.Itoa(len(m.Endpoints[ia].Interfaces)+1)
		nameB := "eth" + strconv.Itoa(len(m.Endpoints[ib].Interfaces)+1)
		link.A = LinkEnd{Endpoint: c.A, Interface: nameA}
		link.B = LinkEnd{Endpoint: c.B, Interface: nameB}
		var addrA, addrB netip.Prefix
		if c.SubnetExplicit {
			first, second := nthAddr(c.Subnet, 2), nthAddr(c.Subnet, 3)
			if ia < ib {
				addrA, addrB = first, second
			} else {
				addrA, addrB = second, first
			}
		}
		b.addInterface(ia, nameA, link, c.B, nameB, addrA, mtu, metas)
		b.addInterface(ib, nameB, link, c.A, nameA, addrB, mtu, metas)
		m.Links = append(m.Links, link)
	}
	return m, nil
}

type builder struct {
	m        *Model
	instance string            // seeds the MACs
	macs     map[string]string // MAC → owner, to catch collisions
}

func (b *builder) warnf(format string, args ...any) {
	b.m.Warnings = append(b.m.Warnings, fmt.Sprintf(format, args...))
}

// image looks slug up; nil (with a warning) when unknown or broken.
func (b *builder) image(slug string, images Images) *lessonmeta.Image {
	if images == nil {
		b.warnf("image %q: no image catalog given; credentials and guest interface names are unknown", slug)
		return nil
	}
	im, err := images.Image(slug)
	switch {
	case err == nil:
		return im
	case errors.Is(err, lessonmeta.ErrNoImage):
		b.warnf("image %q has no image.meta.yaml (searched: %s); credentials and guest interface names are unknown until it is built", slug, describe(images))
	default:
		b.warnf("image %q: %v", slug, err)
	}
	return nil
}

func describe(images Images) string {
	if s, ok := images.(fmt.Stringer); ok {
		return s.String()
	}
	return "the image catalog"
}

func (b *builder) addInterface(ei int, name string, link Link, peer, peerIf string, addr netip.Prefix, mtu int, metas map[string]*lessonmeta.Image) {
	ep := &b.m.Endpoints[ei]
	guest := name
	pos := len(ep.Interfaces)
	if im := metas[ep.Image]; im != nil && len(im.NetworkInterfaces) > 0 {
		if pos < len(im.NetworkInterfaces) {
			guest = im.NetworkInterfaces[pos]
		} else if pos == len(im.NetworkInterfaces) {
			b.warnf("endpoint %q: image %q names %d data interfaces, the lesson cables more; %s and later keep their container names",
				ep.Name, ep.Image, len(im.NetworkInterfaces), name)
		}
	}
	ep.Interfaces = append(ep.Interfaces, Interface{
		Name: name, GuestName: guest, MAC: b.mac(ep.Name, name), MTU: mtu,
		Link: link.Index, Peer: peer, PeerInterface: peerIf, Address: addr,
	})
}

// mac derives the locally administered unicast MAC of an endpoint's
// interface, unique within the lesson, distinct between instances.
func (b *builder) mac(endpoint, iface string) net.HardwareAddr {
	owner := endpoint + "/" + iface
	for n := 0; ; n++ {
		seed := "endpointkit-mac\x00" + b.instance + "\x00" + endpoint + "\x00" + iface
		if n > 0 {
			seed += "\x00" + strconv.Itoa(n)
		}
		sum := sha256.Sum256([]byte(seed))
		hw := net.HardwareAddr(sum[:6])
		hw[0] = hw[0]&0xfe | 0x02 // unicast, locally administered
		if _, taken := b.macs[hw.String()]; !taken {
			b.macs[hw.String()] = owner
			return hw
		}
	}
}

// nthAddr returns the n-th address of p (0 is the network address), with
// p's prefix length.
func nthAddr(p netip.Prefix, n int) netip.Prefix {
	a := p.Masked().Addr()
	for range n {
		a = a.Next()
	}
	return netip.PrefixFrom(a, p.Bits())
}

func appendUnique(s []int, v int) []int {
	for _, x := range s {
		if x == v {
			return s
		}
	}
	return append(s, v)
}

// endpointIndex returns the index of the endpoint named name, or -1.
func (m *Model) endpointIndex(name string) int {
	for i := range m.Endpoints {
		if m.Endpoints[i].Name == name {
			return i
		}
	}
	return -1
}

// Endpoint returns the endpoint named name, or nil.
func (m *Model) Endpoint(name string) *Endpoint {
	if i := m.endpointIndex(name); i >= 0 {
		return &m.Endpoints[i]
	}
	return nil
}
