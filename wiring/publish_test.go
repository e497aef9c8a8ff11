package wiring

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
)

// Published ports reach the endpoint from the host itself (output chain) and
// from another machine through the host (prerouting), and vanish with
// Teardown. A namespace stands in for the host so forwarding can be turned
// on without touching the real one.
func TestPublishPorts(t *testing.T) {
	ektest.RequireRoot(t)
	host, client := ektest.NetNS(t), ektest.NetNS(t)
	hostAddr, clientAddr := netip.MustParseAddr("192.168.202.1"), netip.MustParseAddr("192.168.202.2")
	joinClient(t, host, client, hostAddr, clientAddr)
	if err := nsutil.Do(host, func() error {
		return os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte("1"), 0o644)
	}); err != nil {
		t.Fatal(err)
	}

	inst := testInstance()
	l := newLocal(t, inst)
	l.HostNetNS = host
	p, err := NewPlan(triangle(), Options{Instance: inst, Publish: []Publish{
		{Endpoint: "foobar1", Port: 22},                 // host port chosen at Apply
		{Endpoint: "foobar2", Port: 80, HostPort: 8080}, // fixed
	}})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	st, err := l.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Published) != 2 || st.Published[0].HostPort == 0 || st.Published[1].HostPort != 8080 {
		t.Fatalf("published %+v", st.Published)
	}
	if !slices.Contains(nftTables(t, host), p.NFTable) {
		t.Fatalf("no nftables table %s in the host namespace", p.NFTable)
	}
	for _, pp := range st.Published {
		e, _ := st.Endpoint(pp.Endpoint)
		listenIn(t, e.Namespace, fmt.Sprintf("%s:%d", e.MgmtAddress.Addr(), pp.Port), "hi from "+pp.Endpoint)
	}
	dialFrom := func(ns string, addr netip.Addr, port int) (string, error) {
		var got string
		err := nsutil.Do(ns, func() error {
			var err error
			got, err = readGreeting(netip.AddrPortFrom(addr, uint16(port)).String())
			return err
		})
		return got, err
	}
	for _, pp := range st.Published {
		want := "hi from " + pp.Endpoint
		// From the host, to its own addresses (the management gateway and
		// the address facing the client).
		for _, a := range []netip.Addr{st.Gateway, hostAddr} {
			if got, err := dialFrom(host, a, pp.HostPort); got != want {
				t.Errorf("host → %v:%d = %q, %v; want %q", a, pp.HostPort, got, err, want)
			}
		}
		// From outside, through the host.
		if got, err := dialFrom(client, hostAddr, pp.HostPort); got != want {
			t.Errorf("client → %v:%d = %q, %v; want %q", hostAddr, pp.HostPort, got, err, want)
		}
	}

	// Apply again keeps the chosen port.
	st2, err := l.Apply(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Published[0].HostPort != st.Published[0].HostPort {
		t.Errorf("host port changed from %d to %d", st.Published[0].HostPort, st2.Published[0].HostPort)
	}
	if got, err := dialFrom(client, hostAddr, 8080); got != "hi from foobar2" {
		t.Errorf("after second Apply: client → 8080 = %q, %v", got, err)
	}

	if err := l.Teardown(ctx, l.StateDir(inst)); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, p, l)
	if _, err := dialFrom(client, hostAddr, 8080); err == nil {
		t.Error("published port still answers after Teardown")
	}
}

// joinClient links a client namespace to the host stand-in, with a default
// route via the host.
func joinClient(t *testing.T, host, client string, hostAddr, clientAddr netip.Addr) {
	t.Helper()
	hh, err := nsutil.Handle(host)
	if err != nil {
		t.Fatal(err)
	}
	defer hh.Close()
	ch, err := nsutil.Handle(client)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	cfd, err := nsutil.Open(client)
	if err != nil {
		t.Fatal(err)
	}
	defer cfd.Close()
	la := netlink.NewLinkAttrs()
	la.Name = "c0"
	if err := hh.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: "c0", PeerNamespace: netlink.NsFd(cfd)}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		h    *netlink.Handle
		addr netip.Addr
	}{{hh, hostAddr}, {ch, clientAddr}} {
		for _, name := range []string{"lo", "c0"} {
			lk, err := side.h.LinkByName(name)
			if err == nil {
				err = side.h.LinkSetUp(lk)
			}
			if err == nil && name == "c0" {
				err = side.h.AddrAdd(lk, &netlink.Addr{IPNet: ipNet(netip.PrefixFrom(side.addr, 24))})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	gw := hostAddr.AsSlice()
	if err := ch.RouteAdd(&netlink.Route{Gw: net.IP(gw)}); err != nil {
		t.Fatal(err)
	}
}
