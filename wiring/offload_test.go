package wiring

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"golang.org/x/sys/unix"
)

// openTAP creates a TAP inside ns the way QEMU does for virtio-net: with a
// virtio-net header and checksum offload, so the kernel hands over frames
// whose checksum is unfinished (flag NEEDS_CSUM) instead of finishing it.
func openTAP(t *testing.T, ns, name string) int {
	t.Helper()
	var fd int
	err := nsutil.Do(ns, func() error {
		var err error
		if fd, err = unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
			return err
		}
		ifr, err := unix.NewIfreq(name)
		if err != nil {
			return err
		}
		ifr.SetUint16(unix.IFF_TAP | unix.IFF_NO_PI | unix.IFF_VNET_HDR)
		if err := unix.IoctlIfreq(fd, unix.TUNSETIFF, ifr); err != nil {
			return fmt.Errorf("TUNSETIFF: %w", err)
		}
		return unix.IoctlSetInt(fd, unix.TUNSETOFFLOAD, unix.TUN_F_CSUM)
	})
	if err != nil {
		t.Fatalf("tap in %s: %v", ns, err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// readSYN reads frames from a TAP until a TCP SYN to port arrives and
// returns whether it was marked NEEDS_CSUM and whether its checksum is right.
func readSYN(t *testing.T, fd int, port uint16) (needsCsum, csumOK bool) {
	t.Helper()
	buf := make([]byte, 65536)
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}, 200)
		n, err := unix.Read(fd, buf)
		if err != nil {
			continue
		}
		const vnetHdr = 10 // struct virtio_net_hdr
		f := buf[:n]
		if n < vnetHdr+14+20+20 {
			continue
		}
		flags, eth := f[0], f[vnetHdr:]
		if binary.BigEndian.Uint16(eth[12:14]) != unix.ETH_P_IP {
			continue
		}
		ip := eth[14:]
		ihl := int(ip[0]&0x0f) * 4
		if ip[9] != unix.IPPROTO_TCP {
			continue
		}
		tcp := ip[ihl:int(binary.BigEndian.Uint16(ip[2:4]))]
		if binary.BigEndian.Uint16(tcp[2:4]) != port || tcp[13]&0x02 == 0 {
			continue
		}
		return flags&1 != 0, tcpChecksum(ip[12:16], ip[16:20], tcp) == 0
	}
	t.Fatalf("no SYN to port %d reached the TAP", port)
	return false, false
}

// tcpChecksum sums the pseudo header and segment; 0 means the checksum in
// the segment is right.
func tcpChecksum(src, dst, seg []byte) uint16 {
	var sum uint32
	add := func(b []byte) {
		for len(b) >= 2 {
			sum += uint32(binary.BigEndian.Uint16(b))
			b = b[2:]
		}
		if len(b) == 1 {
			sum += uint32(b[0]) << 8
		}
	}
	add(src)
	add(dst)
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	add(seg)
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// synFrom starts a TCP connection from inside ns (the SYN is all we need).
func synFrom(t *testing.T, ns string, to netip.AddrPort) {
	t.Helper()
	err := nsutil.Do(ns, func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		t.Cleanup(func() { unix.Close(s) })
		err = unix.Connect(s, &unix.SockaddrInet4{Port: int(to.Port()), Addr: to.Addr().As4()})
		if err != unix.EINPROGRESS {
			return fmt.Errorf("connect: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// What qemulaunch does — tc mirred from ethN into a TAP in the namespace —
// must not hand a guest unfinished TCP checksums: with offload off on the
// veths (Apply's doing), the SYN arrives complete. Turning offload back on
// shows the test can tell the difference.
func TestChecksumsThroughMirredTAP(t *testing.T) {
	ektest.RequireTool(t, "tc")
	_, p, _ := applied(t, Options{})
	lk := p.Links[0] // foobar1.eth1 → foobar2.eth1, redirected into tap0 in foobar2
	nsA, nsB := p.endpoint(lk.A.Endpoint).Namespace, p.endpoint(lk.B.Endpoint).Namespace
	tap := openTAP(t, nsB, "tap0")
	for _, args := range [][]string{
		{"ip", "link", "set", "tap0", "up"},
		{"tc", "qdisc", "add", "dev", lk.B.Interface, "ingress"},
		{"tc", "filter", "add", "dev", lk.B.Interface, "parent", "ffff:", "protocol", "all", "u32", "match", "u32", "0", "0",
			"action", "mirred", "egress", "redirect", "dev", "tap0"},
	} {
		if out, err := nsRun(nsB, args...); err != nil {
			t.Fatalf("%v: %v\n%s", args, err, out)
		}
	}
	// B's stack never sees ARP now: give A a static neighbour entry.
	var macB net.HardwareAddr
	nsutil.Do(nsB, func() error {
		ifc, err := net.InterfaceByName(lk.B.Interface)
		if err == nil {
			macB = ifc.HardwareAddr
		}
		return err
	})
	if out, err := exec.Command("ip", "-n", nsA, "neigh", "replace", lk.B.Address.Addr().String(), "lladdr", macB.String(), "dev", lk.A.Interface).CombinedOutput(); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	synFrom(t, nsA, netip.AddrPortFrom(lk.B.Address.Addr(), 7001))
	if needs, ok := readSYN(t, tap, 7001); needs || !ok {
		t.Fatalf("offload off: SYN reached the TAP with NEEDS_CSUM=%v, checksum right=%v; want a finished checksum", needs, ok)
	}

	if err := nsutil.Do(nsA, func() error {
		s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
		if err != nil {
			return err
		}
		defer unix.Close(s)
		return txChecksum(s, lk.A.Interface, true)
	}); err != nil {
		t.Fatal(err)
	}
	synFrom(t, nsA, netip.AddrPortFrom(lk.B.Address.Addr(), 7002))
	if needs, ok := readSYN(t, tap, 7002); !needs || ok {
		t.Errorf("offload on: SYN reached the TAP with NEEDS_CSUM=%v, checksum right=%v; the test cannot tell offload on from off", needs, ok)
	}
}
