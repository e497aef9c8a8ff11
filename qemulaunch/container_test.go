package qemulaunch

import (
	"context"
	"crypto/rand"
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"
)

// fakeContainer is a throw-away network namespace laid out like an
// endpoint container: eth0 is a veth to the host namespace with an IPv4
// address on both ends; with dataNICs > 0, eth1… are veths to a peer
// namespace (the other end of a lesson link).
type fakeContainer struct {
	NS       string
	PeerNS   string
	HostAddr netip.Addr // host end of eth0's veth
	Eth0Addr netip.Addr
	PeerAddr netip.Addr // on the peer end of eth1 (192.0.2.1/24)
}

func newFakeContainer(t *testing.T, dataNICs int) *fakeContainer {
	t.Helper()
	ektest.RequireRoot(t)
	c := &fakeContainer{NS: ektest.NetNS(t)}
	var r [2]byte
	rand.Read(r[:])
	// A random /30 in 198.18.0.0/15 (benchmarking range, never routed).
	base := netip.AddrFrom4([4]byte{198, 18 + r[0]&1, r[1], byte(4 * (int(r[0]>>1) % 63))})
	c.HostAddr, c.Eth0Addr = base.Next(), base.Next().Next()
	hostName := ektest.Name("ekq")
	ns, err := nsutil.Open(c.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	v := &netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}
	if err := netlink.LinkAdd(v); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(hostName); err == nil {
			netlink.LinkDel(l)
		}
	})
	hl, _ := netlink.LinkByName(hostName)
	netlink.AddrAdd(hl, &netlink.Addr{IPNet: prefixNet(c.HostAddr, 30)})
	netlink.LinkSetUp(hl)
	h, _ := nsutil.Handle(c.NS)
	defer h.Close()
	el, _ := h.LinkByName("eth0")
	h.AddrAdd(el, &netlink.Addr{IPNet: prefixNet(c.Eth0Addr, 30)})
	h.LinkSetUp(el)
	lo, _ := h.LinkByName("lo")
	h.LinkSetUp(lo)
	if dataNICs > 0 {
		c.PeerNS = ektest.NetNS(t)
		c.PeerAddr = netip.MustParseAddr("192.0.2.1")
		for i := 1; i <= dataNICs; i++ {
			vethPair(t, c.NS, fmt.Sprintf("eth%d", i), c.PeerNS, fmt.Sprintf("p%d", i))
		}
		ph, _ := nsutil.Handle(c.PeerNS)
		defer ph.Close()
		pl, _ := ph.LinkByName("p1")
		ph.AddrAdd(pl, &netlink.Addr{IPNet: prefixNet(c.PeerAddr, 24)})
	}
	return c
}

func prefixNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

// sshRun logs in as user and runs cmd, from namespace ns ("" = the test's).
func sshRun(t *testing.T, ns, addr, user, pass, cmd string) string {
	t.Helper()
	var conn net.Conn
	dial := func() error {
		var err error
		conn, err = net.DialTimeout("tcp", addr, 10*time.Second)
		return err
	}
	var err error
	if ns == "" {
		err = dial()
	} else {
		err = nsutil.Do(ns, dial)
	}
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	conn.SetDeadline(time.Now().Add(60 * time.Second))
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 20 * time.Second,
	})
	if err != nil {
		t.Fatalf("ssh %s: %v", addr, err)
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		t.Fatalf("ssh %s %q: %v (output %q)", addr, cmd, err, out)
	}
	return string(out)
}

func timeoutCtx(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}
