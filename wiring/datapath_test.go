package wiring

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

const ethPLLDP = 0x88cc

var lldpDst = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

// packetSocket opens an AF_PACKET socket bound to ifname inside ns.
func packetSocket(t *testing.T, ns, ifname string) (fd int, ifc *net.Interface) {
	t.Helper()
	err := nsutil.Do(ns, func() error {
		var err error
		if ifc, err = net.InterfaceByName(ifname); err != nil {
			return err
		}
		if fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL))); err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifc.Index})
	})
	if err != nil {
		t.Fatalf("%s %s: packet socket: %v", ns, ifname, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	tv := unix.NsecToTimeval((200 * time.Millisecond).Nanoseconds())
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv)
	return fd, ifc
}

// lldpFrame is a minimal LLDPDU: chassis ID (locally assigned), port ID
// (interface name), TTL, end.
func lldpFrame(src net.HardwareAddr, chassis, port string) []byte {
	tlv := func(typ int, val []byte) []byte {
		h := uint16(typ)<<9 | uint16(len(val))
		return append([]byte{byte(h >> 8), byte(h)}, val...)
	}
	f := append(append([]byte{}, lldpDst...), src...)
	f = binary.BigEndian.AppendUint16(f, ethPLLDP)
	f = append(f, tlv(1, append([]byte{7}, chassis...))...)
	f = append(f, tlv(2, append([]byte{5}, port...))...)
	f = append(f, tlv(3, []byte{0, 120})...)
	return append(f, tlv(0, nil)...)
}

func sendLLDP(t *testing.T, fd int, ifc *net.Interface, chassis string) {
	t.Helper()
	frame := lldpFrame(ifc.HardwareAddr, chassis, ifc.Name)
	sa := &unix.SockaddrLinklayer{Protocol: htons(ethPLLDP), Ifindex: ifc.Index, Halen: 6}
	copy(sa.Addr[:], lldpDst)
	if err := unix.Sendto(fd, frame, 0, sa); err != nil {
		t.Fatalf("send LLDP on %s: %v", ifc.Name, err)
	}
}

// recvLLDP waits up to 3 s for an LLDP frame carrying chassis.
func recvLLDP(fd int, chassis string) error {
	buf := make([]byte, 2048)
	want := append([]byte{7}, chassis...)
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			continue // timeout; try again until the deadline
		}
		f := buf[:n]
		if n < 14 || !bytes.Equal(f[:6], lldpDst) || binary.BigEndian.Uint16(f[12:14]) != ethPLLDP {
			continue
		}
		if bytes.Contains(f[14:], want) {
			return nil
		}
	}
	return fmt.Errorf("no LLDP frame from chassis %q within 3s", chassis)
}

func TestLLDPOverVeth(t *testing.T) {
	_, p, _ := applied(t, Options{})
	inst := p.Instance
	lk := p.Links[0] // foobar1.eth1 ↔ foobar2.eth1
	rx, _ := packetSocket(t, p.endpoint(lk.B.Endpoint).Namespace, lk.B.Interface)
	tx, ifc := packetSocket(t, p.endpoint(lk.A.Endpoint).Namespace, lk.A.Interface)
	sendLLDP(t, tx, ifc, "foobar1-"+inst)
	if err := recvLLDP(rx, "foobar1-"+inst); err != nil {
		t.Fatalf("%s.%s → %s.%s: %v", lk.A.Endpoint, lk.A.Interface, lk.B.Endpoint, lk.B.Interface, err)
	}
}

// Three connections on one subnet make a bridge segment: every member
// reaches every other, and LLDP is flooded to all of them.
func TestBridgeSegment(t *testing.T) {
	inst := testInstance()
	l := newLocal(t, inst)
	m := buildModel("seg", []string{"a", "b", "c"}, []conn{
		{"a", "b", "10.60.0.0/24"}, {"b", "c", "10.60.0.0/24"}, {"c", "a", "10.60.0.0/24"},
	}, true)
	for i := range m.Links { // a jumbo segment
		m.Links[i].MTU = 9000
	}
	for i := range m.Endpoints {
		for j := range m.Endpoints[i].Interfaces {
			m.Endpoints[i].Interfaces[j].MTU = 9000
		}
	}
	p, err := NewPlan(m, Options{Instance: inst})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Segments) != 1 {
		t.Fatalf("want one segment, plan:\n%s", p)
	}
	ctx := context.Background()
	if _, err := l.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	// a.eth1 (on link 0) reaches every other member address, jumbo frames too.
	src := p.endpoint("a").Namespace
	for _, mb := range p.Segments[0].Members {
		if mb.Endpoint != "a" {
			ping(t, src, mb.Address.Addr().String())
		}
	}
	if out, err := nsRun(src, "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "8972", p.Segments[0].Members[1].Address.Addr().String()); err != nil {
		t.Errorf("jumbo ping across the segment: %v\n%s", err, out)
	}
	var rxs []int
	for _, mb := range p.Segments[0].Members[1:] {
		fd, _ := packetSocket(t, p.endpoint(mb.Endpoint).Namespace, mb.Interface)
		rxs = append(rxs, fd)
	}
	first := p.Segments[0].Members[0]
	tx, ifc := packetSocket(t, p.endpoint(first.Endpoint).Namespace, first.Interface)
	sendLLDP(t, tx, ifc, "seg-"+inst)
	for i, fd := range rxs {
		if err := recvLLDP(fd, "seg-"+inst); err != nil {
			mb := p.Segments[0].Members[i+1]
			t.Errorf("LLDP to %s.%s across the bridge: %v", mb.Endpoint, mb.Interface, err)
		}
	}
	// Converges when applied again.
	if _, err := l.Apply(ctx, p); err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	ping(t, src, p.Segments[0].Members[5].Address.Addr().String())
	if err := l.Teardown(ctx, l.StateDir(inst)); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, p, l)
}

// underlay joins two namespaces standing in for hosts with a veth pair
// (MTU 1600, so a 1500-byte VXLAN link fits) and returns their addresses.
func underlay(t *testing.T, ha, hb string) (netip.Addr, netip.Addr) {
	t.Helper()
	a, b := netip.MustParseAddr("192.168.201.1"), netip.MustParseAddr("192.168.201.2")
	for i, side := range []struct {
		ns   string
		addr netip.Addr
	}{{ha, a}, {hb, b}} {
		h, err := nsutil.Handle(side.ns)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		if i == 0 {
			peer, err := nsutil.Open(hb)
			if err != nil {
				t.Fatal(err)
			}
			defer peer.Close()
			la := netlink.NewLinkAttrs()
			la.Name, la.MTU = "u0", 1600
			if err := h.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "u0", PeerNamespace: netlink.NsFd(peer), PeerMTU: 1600}); err != nil {
				t.Fatal(err)
			}
		}
		for _, name := range []string{"lo", "u0"} {
			lk, err := h.LinkByName(name)
			if err != nil {
				t.Fatal(err)
			}
			if err := h.LinkSetUp(lk); err != nil {
				t.Fatal(err)
			}
			if name == "u0" {
				if err := h.AddrAdd(lk, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(side.addr, 24))}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	return a, b
}

func TestVXLANBetweenHosts(t *testing.T) {
	ektest.RequireRoot(t)
	ha, hb := ektest.NetNS(t), ektest.NetNS(t)
	ua, ub := underlay(t, ha, hb)
	inst := testInstance()
	la, lb := newLocal(t, inst), newLocal(t, inst)
	la.HostNetNS, la.Host = ha, "a"
	lb.HostNetNS, lb.Host = hb, "b"
	m := buildModel("vx", []string{"e1", "e2", "e3"}, []conn{
		{"e1", "e2", "10.70.0.0/24"}, {"e2", "e3", "10.71.0.0/24"},
	}, false)
	p, err := NewPlan(m, Options{Instance: inst,
		Placement: map[string]string{"e1": "a", "e2": "b", "e3": "b"},
		Underlay:  map[string]netip.Addr{"a": ua, "b": ub}})
	if err != nil {
		t.Fatal(err)
	}
	if p.Links[0].Kind != KindVXLAN || p.Links[1].Kind != KindVeth {
		t.Fatalf("kinds: %s", p)
	}
	ctx := context.Background()
	for _, l := range []*Local{la, lb} {
		st, err := l.Apply(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		if want := map[string]int{"a": 1, "b": 2}[l.Host]; len(st.Endpoints) != want {
			t.Fatalf("host %s wired %d endpoints, want %d", l.Host, len(st.Endpoints), want)
		}
	}
	vx := p.Links[0]
	ping(t, p.endpoint("e1").Namespace, vx.B.Address.Addr().String())
	ping(t, p.endpoint("e2").Namespace, vx.A.Address.Addr().String())
	if out, err := nsRun(p.endpoint("e1").Namespace, "ping", "-c", "1", "-W", "3", "-M", "do", "-s", "1472", vx.B.Address.Addr().String()); err != nil {
		t.Errorf("full-size frame over VXLAN: %v\n%s", err, out)
	}
	rx, _ := packetSocket(t, p.endpoint("e2").Namespace, vx.B.Interface)
	tx, ifc := packetSocket(t, p.endpoint("e1").Namespace, vx.A.Interface)
	sendLLDP(t, tx, ifc, "vx-"+inst)
	if err := recvLLDP(rx, "vx-"+inst); err != nil {
		t.Errorf("LLDP over VXLAN: %v", err)
	}
	for _, l := range []*Local{la, lb} {
		if _, err := l.Apply(ctx, p); err != nil {
			t.Fatalf("host %s, second Apply: %v", l.Host, err)
		}
	}
	ping(t, p.endpoint("e1").Namespace, vx.B.Address.Addr().String())
	for _, l := range []*Local{la, lb} {
		if err := l.Teardown(ctx, l.StateDir(inst)); err != nil {
			t.Fatal(err)
		}
	}
	assertNothingLeft(t, p, la)
	assertNothingLeft(t, p, lb)
}

func TestNotRoot(t *testing.T) {
	if os.Geteuid() == 0 {
		runAsNobody(t, "TestNotRoot")
		return
	}
	p, err := NewPlan(triangle(), Options{Instance: "notroot"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = (&Local{StateRoot: t.TempDir()}).Apply(context.Background(), p)
	if !errors.Is(err, ErrNotPermitted) || !bytes.Contains([]byte(err.Error()), []byte("instance notroot")) {
		t.Fatalf("Apply as uid %d = %v; want ErrNotPermitted naming the instance", os.Geteuid(), err)
	}
}

// A real lesson from the shared corpus, through lessonmeta and the endpoint
// builder: every connection passes traffic with the builder's addresses.
func TestRealLessonTriangle(t *testing.T) {
	corpus := filepath.Join(ektest.SharedDir(t), "corpus")
	dir := filepath.Join(corpus, "lessons", "jsnapy-network-testing")
	l, err := lessonmeta.Load(dir, lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := endpoint.Build(l, lessonmeta.ImageDirs{filepath.Join(corpus, "images")})
	if err != nil {
		t.Fatal(err)
	}
	inst := testInstance()
	lc := newLocal(t, inst)
	p, err := NewPlan(m, Options{Instance: inst})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lc.Apply(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	// crpd's image asks for forwarding; the utility image does not.
	for _, e := range m.Endpoints {
		out, err := nsRun(p.endpoint(e.Name).Namespace, "cat", "/proc/sys/net/ipv4/ip_forward")
		if want := map[bool]string{true: "1", false: "0"}[e.EnableForwarding]; err != nil || strings.TrimSpace(out) != want {
			t.Errorf("%s: ip_forward = %q, %v; want %s", e.Name, out, err, want)
		}
	}
	for i, lk := range m.Links {
		if !lk.Explicit {
			continue
		}
		a, b := p.Links[i].A, p.Links[i].B
		ping(t, p.endpoint(a.Endpoint).Namespace, b.Address.Addr().String())
		ping(t, p.endpoint(b.Endpoint).Namespace, a.Address.Addr().String())
	}
	teardownClean(t, lc, p)
}
