package agent

import (
	"context"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"github.com/vishvananda/netlink"
)

// testDHCPServer answers on link in namespace ns (address 10.99.0.1/24)
// with leases of 10.99.0.50 lasting leaseTime, and counts the REQUESTs.
type testDHCPServer struct {
	leaseTime time.Duration
	requests  atomic.Int32
	hostname  atomic.Value
}

func (s *testDHCPServer) handle(conn net.PacketConn, _ net.Addr, m *dhcpv4.DHCPv4) {
	var typ dhcpv4.MessageType
	switch m.MessageType() {
	case dhcpv4.MessageTypeDiscover:
		typ = dhcpv4.MessageTypeOffer
	case dhcpv4.MessageTypeRequest:
		typ = dhcpv4.MessageTypeAck
		s.requests.Add(1)
		s.hostname.Store(m.HostName())
	default:
		return
	}
	srv := net.IPv4(10, 99, 0, 1)
	reply, err := dhcpv4.NewReplyFromRequest(m, dhcpv4.WithMessageType(typ), dhcpv4.WithYourIP(net.IPv4(10, 99, 0, 50)),
		dhcpv4.WithServerIP(srv), dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srv)),
		dhcpv4.WithNetmask(net.CIDRMask(24, 32)), dhcpv4.WithRouter(srv), dhcpv4.WithDNS(net.IPv4(10, 99, 0, 53)),
		dhcpv4.WithOption(dhcpv4.OptDomainName("lab.test")), dhcpv4.WithLeaseTime(uint32(s.leaseTime.Seconds())))
	if err != nil {
		return
	}
	conn.WriteTo(reply.ToBytes(), &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ClientPort})
}

// TestDHCPClient runs the agent's DHCP client in a namespace against a
// DHCP server across a veth pair: the client waits for its interface to
// appear, configures address, default route, resolv.conf and the lease
// file, and renews the (short) lease at T1.
func TestDHCPClient(t *testing.T) {
	srvNS, cliNS := ektest.NetNS(t), ektest.NetNS(t)
	sh, err := nsutil.Handle(srvNS)
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close()
	ch, err := nsutil.Handle(cliNS)
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	if err := sh.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: "s0"}, PeerName: "c0"}); err != nil {
		t.Fatal(err)
	}
	s0, _ := sh.LinkByName("s0")
	sh.AddrAdd(s0, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(10, 99, 0, 1), Mask: net.CIDRMask(24, 32)}})
	sh.LinkSetUp(s0)

	srv := &testDHCPServer{leaseTime: 4 * time.Second}
	var server *server4.Server
	err = nsutil.Do(srvNS, func() error {
		conn, err := server4.NewIPv4UDPConn("s0", &net.UDPAddr{Port: dhcpv4.ServerPort})
		if err != nil {
			return err
		}
		server, err = server4.NewServer("", nil, srv.handle, server4.WithConn(conn))
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	go server.Serve()
	defer server.Close()

	dir := t.TempDir()
	d := &dhcpClient{ifc: "c0", hostname: "r1", log: slog.New(slog.DiscardHandler), attempt: 500 * time.Millisecond,
		resolvConf: filepath.Join(dir, "resolv.conf"), stateDir: dir}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	bound := make(chan struct{})
	ran := make(chan error, 1)
	go func() {
		ran <- nsutil.Do(cliNS, func() error {
			if err := waitLinkUp(ctx, "c0"); err != nil {
				return err
			}
			d.run(ctx, bound)
			return nil
		})
	}()
	// The client's interface appears only now, as a driver's would.
	time.Sleep(200 * time.Millisecond)
	c0, err := sh.LinkByName("c0")
	if err != nil {
		t.Fatal(err)
	}
	target, err := nsutil.Open(cliNS)
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if err := sh.LinkSetNsFd(c0, int(target)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-bound:
	case err := <-ran:
		t.Fatalf("client ended before a lease: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("no lease within 10 s")
	}

	c0, err = ch.LinkByName("c0")
	if err != nil {
		t.Fatal(err)
	}
	addrs, _ := ch.AddrList(c0, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "10.99.0.50/24" {
		t.Errorf("addresses on c0 = %v; want 10.99.0.50/24", addrs)
	}
	routes, _ := ch.RouteList(c0, netlink.FAMILY_V4)
	var gw string
	for _, r := range routes {
		if r.Dst == nil || r.Dst.IP.IsUnspecified() {
			gw = r.Gw.String()
		}
	}
	if gw != "10.99.0.1" {
		t.Errorf("default route via %q; want 10.99.0.1 (routes %v)", gw, routes)
	}
	if raw, _ := os.ReadFile(d.resolvConf); string(raw) != "search lab.test\nnameserver 10.99.0.53\n" {
		t.Errorf("resolv.conf = %q", raw)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "dhcp.c0"))
	for _, want := range []string{"interface=c0\n", "ip=10.99.0.50\n", "mask=24\n", "router=10.99.0.1\n", "dns=10.99.0.53\n", "lease=4\n", "serverid=10.99.0.1\n"} {
		if !strings.Contains(string(raw), want) {
			t.Errorf("lease file lacks %q:\n%s", want, raw)
		}
	}
	if h, _ := srv.hostname.Load().(string); h != "r1" {
		t.Errorf("hostname option = %q; want r1", h)
	}

	// T1 is half the lease: a renewing REQUEST follows after ~2 s.
	deadline := time.Now().Add(6 * time.Second)
	for srv.requests.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if n := srv.requests.Load(); n < 2 {
		t.Errorf("%d REQUESTs within 6 s of a 4 s lease; want a renewal", n)
	}
	cancel()
	if err := <-ran; err != nil {
		t.Errorf("client: %v", err)
	}
}
