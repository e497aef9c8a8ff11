package qemulaunch

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
	"unsafe"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// openTAP attaches to a persistent TAP (as QEMU would) and returns its fd
// as a file with deadlines.
func openTAP(t *testing.T, ns, name string) *os.File {
	t.Helper()
	var f *os.File
	err := nsutil.Do(ns, func() error {
		fd, err := unix.Open("/dev/net/tun", unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		var req [unix.IFNAMSIZ + 24]byte
		copy(req[:], name)
		binary.NativeEndian.PutUint16(req[unix.IFNAMSIZ:], unix.IFF_TAP|unix.IFF_NO_PI)
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.TUNSETIFF, uintptr(unsafe.Pointer(&req[0]))); e != 0 {
			unix.Close(fd)
			return fmt.Errorf("TUNSETIFF %s: %w", name, e)
		}
		unix.SetNonblock(fd, true)
		f = os.NewFile(uintptr(fd), name)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// packetSocket opens an AF_PACKET socket bound to ifname in ns.
func packetSocket(t *testing.T, ns, ifname string) *os.File {
	t.Helper()
	var f *os.File
	err := nsutil.Do(ns, func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		proto := int(htons(unix.ETH_P_ALL))
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, proto)
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifi.Index}); err != nil {
			unix.Close(fd)
			return err
		}
		f = os.NewFile(uintptr(fd), "packet:"+ifname)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

var lldpMAC = net.HardwareAddr{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e}

// frame builds an Ethernet frame carrying a random token.
func frame(dst net.HardwareAddr, ethertype uint16) ([]byte, []byte) {
	token := make([]byte, 16)
	rand.Read(token)
	b := append([]byte{}, dst...)
	b = append(b, 0x02, 0xee, 0, 0, 0, 1)
	b = binary.BigEndian.AppendUint16(b, ethertype)
	b = append(b, []byte("endpointkit-test")...)
	b = append(b, token...)
	for len(b) < 60 {
		b = append(b, 0)
	}
	return b, token
}

// expectFrame reads r until a frame containing token arrives.
func expectFrame(t *testing.T, r *os.File, token []byte, what string) {
	t.Helper()
	r.SetReadDeadline(time.Now().Add(3 * time.Second))
	buf := make([]byte, 65536)
	for {
		n, err := r.Read(buf)
		if err != nil {
			t.Fatalf("%s: frame never arrived: %v", what, err)
		}
		if bytes.Contains(buf[:n], token) {
			return
		}
	}
}

// sendBothWays proves frames cross between the peer namespace and the TAP
// in both directions.
func sendBothWays(t *testing.T, tapF, peerF *os.File, dst net.HardwareAddr, ethertype uint16, what string) {
	t.Helper()
	f, tok := frame(dst, ethertype)
	if _, err := peerF.Write(f); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, tapF, tok, what+": peer -> TAP")
	f, tok = frame(dst, ethertype)
	if _, err := tapF.Write(f); err != nil {
		t.Fatal(err)
	}
	expectFrame(t, peerF, tok, what+": TAP -> peer")
}

func TestStitchFramesCross(t *testing.T) {
	ektest.RequireRoot(t)
	for _, mode := range []StitchMode{StitchMirred, StitchBridge} {
		t.Run(string(mode), func(t *testing.T) {
			ns, peerNS := ektest.NetNS(t), ektest.NetNS(t)
			qemulaunchtest.VethPair(t, ns, "eth1", peerNS, "peer1")
			env, err := openNetEnv(ns)
			if err != nil {
				t.Fatal(err)
			}
			defer env.close()
			eth, _ := env.h.LinkByName("eth1")
			tap, err := env.createTAP("tap1", "st", eth.Attrs().MTU)
			if err != nil {
				t.Fatal(err)
			}
			if tap.Attrs().MTU != eth.Attrs().MTU {
				t.Errorf("TAP MTU %d != eth1 MTU %d", tap.Attrs().MTU, eth.Attrs().MTU)
			}
			if err := env.disableTXChecksum("eth1"); err != nil {
				t.Fatal(err)
			}
			tapF := openTAP(t, ns, "tap1") // carrier up, as when QEMU has it open
			st, _ := stitcherFor(mode, "st", 1)
			if err := st.stitch(env, eth, tap); err != nil {
				t.Fatal(err)
			}
			peerF := packetSocket(t, peerNS, "peer1")
			time.Sleep(50 * time.Millisecond) // bridge port to forwarding
			sendBothWays(t, tapF, peerF, lldpMAC, 0x88cc, "LLDP")
			sendBothWays(t, tapF, peerF, net.HardwareAddr{0x02, 0x11, 0x22, 0x33, 0x44, 0x55}, 0x88b5, "unicast")

			if err := st.unstitch(env, eth, tap); err != nil {
				t.Fatal(err)
			}
			tapF.Close()
			if err := env.h.LinkDel(tap); err != nil {
				t.Fatal(err)
			}
			qemulaunchtest.AssertClean(t, ns)
		})
	}
}

func TestCreateTAPRefusesForeignLink(t *testing.T) {
	ns := ektest.NetNS(t)
	env, err := openNetEnv(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	if _, err := env.createTAP("tap1", "a", 1500); err != nil {
		t.Fatal(err)
	}
	if _, err := env.createTAP("tap1", "b", 1500); err == nil || !strings.Contains(err.Error(), "not created by") {
		t.Fatalf("instance b took instance a's TAP: %v", err)
	}
	// The same instance (a crashed earlier launch) replaces its own.
	if _, err := env.createTAP("tap1", "a", 1400); err != nil {
		t.Fatal(err)
	}
	l, _ := env.h.LinkByName("tap1")
	if l.Attrs().MTU != 1400 {
		t.Errorf("MTU %d", l.Attrs().MTU)
	}
	env.h.LinkDel(l)
	qemulaunchtest.AssertClean(t, ns)
}

func TestDiscoverWaitsForInterfaces(t *testing.T) {
	ns, peerNS := ektest.NetNS(t), ektest.NetNS(t)
	env, err := openNetEnv(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	go func() {
		time.Sleep(100 * time.Millisecond)
		qemulaunchtest.VethPair(t, ns, "eth2", peerNS, "p2")
		qemulaunchtest.VethPair(t, ns, "eth1", peerNS, "p1")
	}()
	t0 := time.Now()
	f, err := env.discover(bg(), want{count: 2}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if len(f.data) != 2 || f.data[0].Attrs().Name != "eth1" || f.data[1].Attrs().Name != "eth2" {
		t.Fatalf("found %v", f.data)
	}
	if d := time.Since(t0); d > 2*time.Second {
		t.Errorf("took %v; should react to the netlink event", d)
	}
	// Whatever ethN exist, in N order.
	f, err = env.discover(bg(), want{}, time.Second)
	if err != nil || len(f.data) != 2 {
		t.Fatalf("discover(all) = %v, %v", f, err)
	}
	// A missing one times out and says which.
	_, err = env.discover(bg(), want{count: 3}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "eth3") || !strings.Contains(err.Error(), "eth1, eth2") {
		t.Fatalf("err = %v", err)
	}
	// The management interface needs an IPv4 address.
	qemulaunchtest.VethPair(t, ns, "eth0", peerNS, "p0")
	_, err = env.discover(bg(), want{mgmt: "eth0"}, 200*time.Millisecond)
	if err == nil || !strings.Contains(err.Error(), "IPv4 address on eth0") {
		t.Fatalf("err = %v", err)
	}
	go func() {
		time.Sleep(50 * time.Millisecond)
		l, _ := env.h.LinkByName("eth0")
		a, _ := netlink.ParseAddr("192.0.2.10/24")
		env.h.AddrAdd(l, a)
	}()
	f, err = env.discover(bg(), want{mgmt: "eth0"}, 5*time.Second)
	if err != nil || f.mgmtAddr.String() != "192.0.2.10" {
		t.Fatalf("mgmt = %v, %v", f, err)
	}
}

func TestForwardPortInUse(t *testing.T) {
	ns := ektest.NetNS(t)
	env, err := openNetEnv(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer env.close()
	h := env.h
	lo, _ := h.LinkByName("lo")
	h.LinkSetUp(lo)
	var l net.Listener
	if err := nsutil.Do(ns, func() error {
		var err error
		l, err = net.Listen("tcp4", "127.0.0.1:2222")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	addr := mustAddr("127.0.0.1")
	if _, err := env.resolveForwards(addr, []Forward{{GuestPort: 2222}}); err == nil || !strings.Contains(err.Error(), "127.0.0.1:2222 is taken") {
		t.Fatalf("err = %v", err)
	}
	fs, err := env.resolveForwards(addr, []Forward{{GuestPort: 22, HostPort: AutoPort}, {GuestPort: 830}})
	if err != nil {
		t.Fatal(err)
	}
	if fs[0].HostPort <= 0 || fs[1].HostPort != 830 {
		t.Errorf("forwards %v", fs)
	}
	if _, err := env.resolveForwards(mustAddr("198.51.100.7"), []Forward{{GuestPort: 22}}); err == nil || !strings.Contains(err.Error(), "not on any interface") {
		t.Fatalf("err = %v", err)
	}
}
