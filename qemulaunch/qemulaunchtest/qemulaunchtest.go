// Package qemulaunchtest builds throw-away, container-like network
// namespaces for tests of the launcher (and of code that starts it): eth0
// as a veth to the test's namespace with IPv4 addresses on both ends, and
// data interfaces eth1… as veths to a peer namespace. It also runs
// commands over SSH and checks that the launcher left nothing behind.
// Everything needs root; helpers skip without it.
package qemulaunchtest

import (
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
	"golang.org/x/crypto/ssh"
)

// Container is a throw-away namespace laid out like an endpoint container.
type Container struct {
	NS       string     // the container's namespace
	PeerNS   string     // the other end of eth1… ("" without data NICs)
	HostAddr netip.Addr // host end of eth0's veth (a /30)
	Eth0Addr netip.Addr
	PeerAddr netip.Addr // 192.0.2.1/24 on p1, the peer end of eth1
}

// NewContainer creates the namespaces and links; they are removed when the
// test ends.
func NewContainer(tb testing.TB, dataNICs int) *Container {
	tb.Helper()
	ektest.RequireRoot(tb)
	c := &Container{NS: ektest.NetNS(tb)}
	var r [2]byte
	rand.Read(r[:])
	// A random /30 in 198.18.0.0/15 (the benchmarking range, never routed).
	base := netip.AddrFrom4([4]byte{198, 18 + r[0]&1, r[1], byte(4 * (int(r[0]>>1) % 63))})
	c.HostAddr, c.Eth0Addr = base.Next(), base.Next().Next()
	hostName := ektest.Name("ekq")
	ns, err := nsutil.Open(c.NS)
	if err != nil {
		tb.Fatal(err)
	}
	defer ns.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = hostName
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if l, err := netlink.LinkByName(hostName); err == nil {
			netlink.LinkDel(l)
		}
	})
	hl, err := netlink.LinkByName(hostName)
	if err != nil {
		tb.Fatal(err)
	}
	must(tb, netlink.AddrAdd(hl, &netlink.Addr{IPNet: ipNet(c.HostAddr, 30)}))
	must(tb, netlink.LinkSetUp(hl))
	h := handle(tb, c.NS)
	defer h.Close()
	el, err := h.LinkByName("eth0")
	if err != nil {
		tb.Fatal(err)
	}
	must(tb, h.AddrAdd(el, &netlink.Addr{IPNet: ipNet(c.Eth0Addr, 30)}))
	must(tb, h.LinkSetUp(el))
	lo, _ := h.LinkByName("lo")
	must(tb, h.LinkSetUp(lo))
	if dataNICs > 0 {
		c.PeerNS = ektest.NetNS(tb)
		c.PeerAddr = netip.MustParseAddr("192.0.2.1")
		for i := 1; i <= dataNICs; i++ {
			VethPair(tb, c.NS, fmt.Sprintf("eth%d", i), c.PeerNS, fmt.Sprintf("p%d", i))
		}
		ph := handle(tb, c.PeerNS)
		defer ph.Close()
		pl, _ := ph.LinkByName("p1")
		must(tb, ph.AddrAdd(pl, &netlink.Addr{IPNet: ipNet(c.PeerAddr, 24)}))
	}
	return c
}

// VethPair creates name in ns paired with peerName in peerNS, both up.
func VethPair(tb testing.TB, ns, name, peerNS, peerName string) {
	tb.Helper()
	h := handle(tb, ns)
	defer h.Close()
	peer, err := nsutil.Open(peerNS)
	if err != nil {
		tb.Fatal(err)
	}
	defer peer.Close()
	attrs := netlink.NewLinkAttrs()
	attrs.Name = name
	if err := h.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: peerName, PeerNamespace: netlink.NsFd(int(peer))}); err != nil {
		tb.Fatalf("veth %s/%s: %v", name, peerName, err)
	}
	l, _ := h.LinkByName(name)
	must(tb, h.LinkSetUp(l))
	ph := handle(tb, peerNS)
	defer ph.Close()
	pl, err := ph.LinkByName(peerName)
	if err != nil {
		tb.Fatal(err)
	}
	must(tb, ph.LinkSetUp(pl))
}

// AssertClean fails if anything the launcher creates is left in ns: links
// with an "endpointkit:" alias, TAPs, bridges, ingress qdiscs.
func AssertClean(tb testing.TB, ns string) {
	tb.Helper()
	h := handle(tb, ns)
	defer h.Close()
	links, _ := h.LinkList()
	for _, l := range links {
		a := l.Attrs()
		if strings.HasPrefix(a.Alias, "endpointkit:") || l.Type() == "tuntap" || l.Type() == "bridge" {
			tb.Errorf("netns %s: %s %s left behind", ns, l.Type(), a.Name)
		}
		qs, _ := h.QdiscList(l)
		for _, q := range qs {
			if q.Type() == "ingress" {
				tb.Errorf("netns %s: ingress qdisc left on %s", ns, a.Name)
			}
		}
	}
}

// SSH logs in with a password (host key not checked) from namespace ns
// ("" = the caller's), runs cmd with stdin, and returns its stdout.
func SSH(tb testing.TB, ns, addr, user, pass, cmd string, stdin io.Reader) string {
	tb.Helper()
	client, err := Dial(ns, addr, user, pass)
	if err != nil {
		tb.Fatal(err)
	}
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	s.Stdin = stdin
	var stderr strings.Builder
	s.Stderr = &stderr
	out, err := s.Output(cmd)
	if err != nil {
		tb.Fatalf("ssh %s %q: %v (stdout %q, stderr %q)", addr, cmd, err, out, stderr.String())
	}
	return string(out)
}

// Dial opens an SSH client connection from namespace ns.
func Dial(ns, addr, user, pass string) (*ssh.Client, error) {
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
		return nil, fmt.Errorf("dial %s: %w", addr, err)
	}
	cc, chans, reqs, err := ssh.NewClientConn(conn, addr, &ssh.ClientConfig{
		User: user, Auth: []ssh.AuthMethod{ssh.Password(pass)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second,
	})
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh %s: %w", addr, err)
	}
	return ssh.NewClient(cc, chans, reqs), nil
}

func handle(tb testing.TB, ns string) *netlink.Handle {
	h, err := nsutil.Handle(ns)
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func ipNet(a netip.Addr, bits int) *net.IPNet {
	return &net.IPNet{IP: a.AsSlice(), Mask: net.CIDRMask(bits, 32)}
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// WithScratchDisk returns a copy of an image directory (kernel and initrd
// linked, not copied) whose manifest adds an empty 64 MiB qcow2 base disk,
// so a diskless image like tiny gets a per-instance overlay the guest can
// write to (/dev/vda).
func WithScratchDisk(tb testing.TB, im *vmimage.Image) *vmimage.Image {
	tb.Helper()
	dir := tb.TempDir()
	m := im.Manifest
	for _, rel := range []string{m.Kernel, m.Initrd} {
		if rel != "" {
			must(tb, os.Symlink(im.Path(rel), filepath.Join(dir, rel)))
		}
	}
	if out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "scratch.qcow2"), "64M").CombinedOutput(); err != nil {
		tb.Fatalf("qemu-img: %v: %s", err, out)
	}
	m.Disk, m.DiskFormat = "scratch.qcow2", "qcow2"
	must(tb, vmimage.Write(dir, m))
	out, err := vmimage.Load(dir)
	must(tb, err)
	return out
}
