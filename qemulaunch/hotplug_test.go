package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
)

// The tiny guest, supervised as `endpoint run` runs it, gets a NIC added
// through the control socket behind a new eth2: the guest sees it at the
// layout's place (slot 4, eth2), carries traffic to the peer over it, and
// releases it when it is removed; nothing is left afterwards.
func TestHotplugNICSupervised(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 1)
	dir := StateDir(filepath.Join(t.TempDir(), "state"))
	cfg := Config{Name: "hot", Image: im, NetNS: c.NS, Accel: AccelTCG, StateDir: string(dir),
		Forwards: []Forward{{GuestPort: 22}}, Logger: testLogger(t)}
	stop := make(chan os.Signal, 1)
	restart := make(chan RestartRequest, 1)
	done := make(chan error, 1)
	go func() { done <- Supervise(bg(), cfg, SuperviseOptions{Stop: stop, Restart: restart}) }()
	t.Cleanup(func() {
		select {
		case stop <- os.Interrupt:
		default:
		}
		<-done
	})
	waitHealth(t, dir, HealthReady, 3*time.Minute)
	ssh := func(cmd string) string {
		return qemulaunchtest.SSH(t, "", net.JoinHostPort(c.Eth0Addr.String(), "22"), "antidote", "antidotepassword", cmd, nil)
	}

	// Cable eth2 to the peer, then ask the launcher for the NIC.
	qemulaunchtest.VethPair(t, c.NS, "eth2", c.PeerNS, "p2")
	ph, _ := nsutil.Handle(c.PeerNS)
	defer ph.Close()
	p2, _ := ph.LinkByName("p2")
	if err := ph.AddrAdd(p2, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.51.100.1"), Mask: net.CIDRMask(24, 32)}}); err != nil {
		t.Fatal(err)
	}
	mac := DeriveMAC("hot-added", 2)
	ctx := timeoutCtx(t, 2*time.Minute)
	t0 := time.Now()
	nic, err := AddNIC(ctx, dir, Interface{Name: "eth2", MAC: mac})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("NIC added in %v: %+v", time.Since(t0).Round(time.Millisecond), nic)
	if nic.Index != 2 || nic.PCI != "04.0" || nic.Slot != 4 || nic.GuestName != "eth2" || nic.TAP != "tap2" || nic.MTU != 1500 {
		t.Errorf("NIC = %+v; want data NIC 2 at 04.0 (slot 4), eth2, tap2, MTU 1500", nic)
	}
	// A second add of the same NIC is refused; the first stays.
	if _, err := AddNIC(ctx, dir, Interface{Name: "eth2", MAC: DeriveMAC("hot-added", 3)}); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "already has a NIC behind eth2") {
		t.Errorf("second AddNIC of eth2: %v", err)
	}
	out := ssh(fmt.Sprintf(`for i in $(seq 100); do for d in /sys/class/net/*; do [ "$(cat $d/address)" = %s ] && { echo ${d##*/}; `+
		`sudo ip addr add 198.51.100.2/24 dev ${d##*/}; sudo ip link set ${d##*/} up; ping -c 1 -W 2 198.51.100.1 >/dev/null && echo pong; exit 0; }; done; sleep 0.1; done; echo no NIC`, mac))
	if out != "eth2\npong\n" {
		t.Fatalf("guest after the add: %q; want the NIC as eth2, answering the peer", out)
	}
	t.Logf("guest pinged the peer over the added NIC %v after the add", time.Since(t0).Round(time.Millisecond))

	t1 := time.Now()
	if err := RemoveNIC(ctx, dir, "eth2"); err != nil {
		t.Fatal(err)
	}
	t.Logf("NIC removed in %v", time.Since(t1).Round(time.Millisecond))
	if out := ssh("ls /sys/class/net"); strings.Contains(out, "eth2") {
		t.Errorf("guest still has eth2 after the removal: %q", out)
	}
	if err := RemoveNIC(ctx, dir, "eth2"); !errors.Is(err, ErrNoNIC) {
		t.Errorf("removing again: %v; want ErrNoNIC", err)
	}
	h, _ := nsutil.Handle(c.NS)
	defer h.Close()
	if _, err := h.LinkByName("tap2"); err == nil {
		t.Error("tap2 left after the removal")
	}
	// Added again (the slot is free); a restart in place boots with it.
	if _, err := AddNIC(ctx, dir, Interface{Name: "eth2", MAC: mac}); err != nil {
		t.Fatalf("AddNIC after the removal: %v", err)
	}
	restart <- RestartRequest{}
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if rec, _ := ReadRestarts(dir); rec.Count == 1 {
			if h, _, _ := ReadHealth(dir); h != HealthReady {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no restart recorded a minute after the request")
		}
	}
	waitHealth(t, dir, HealthReady, 3*time.Minute)
	if out := ssh(fmt.Sprintf(`for d in /sys/class/net/*; do [ "$(cat $d/address)" = %s ] && { sudo ip addr add 198.51.100.2/24 dev ${d##*/}; `+
		`sudo ip link set ${d##*/} up; ping -c 1 -W 2 198.51.100.1 >/dev/null && echo pong; exit 0; }; done; echo no NIC`, mac)); out != "pong\n" {
		t.Fatalf("guest after a restart in place: %q; want the added NIC there at boot, answering the peer", out)
	}
	if _, err := AddNIC(ctx, dir, Interface{Name: "eth2", MAC: mac}); !errors.Is(err, ErrConfig) {
		t.Errorf("AddNIC of eth2 after the restart: %v; want ErrConfig (the VM has it)", err)
	}
	stop <- os.Interrupt
	if err := <-done; err != nil {
		t.Errorf("Supervise: %v", err)
	}
	done <- nil
	qemulaunchtest.AssertClean(t, c.NS)
	if _, err := os.Stat(dir.ControlSocket()); err == nil {
		t.Error("control socket left after the launcher ended")
	}
	if _, err := AddNIC(ctx, dir, Interface{Name: "eth2", MAC: mac}); !errors.Is(err, ErrNoControl) {
		t.Errorf("AddNIC without a launcher: %v; want ErrNoControl", err)
	}
}

// A guest that does not take part in hot-plug (SeaBIOS with nothing to
// boot) gets the NIC from QEMU but never releases it: the removal fails
// as ErrNoHotplug after the release timeout, and the NIC stays recorded,
// so the stop still cleans it up. A failed add (the TAP name is taken by
// someone else's link) leaves nothing.
func TestHotplugNICGuestWithoutHotplug(t *testing.T) {
	ektest.RequireRoot(t)
	c := qemulaunchtest.NewContainer(t, 1)
	cfg := blankConfig(t)
	cfg.NetNS, cfg.DataInterfaces = c.NS, 1
	vm, err := Start(bg(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	qemulaunchtest.VethPair(t, c.NS, "eth5", c.PeerNS, "p5")
	qemulaunchtest.VethPair(t, c.NS, "eth6", c.PeerNS, "p6")
	ctx := timeoutCtx(t, time.Minute)

	// A link named tap6 that is not ours: the add of eth6 fails, leaves
	// nothing and the slot free.
	h, _ := nsutil.Handle(c.NS)
	defer h.Close()
	qemulaunchtest.VethPair(t, c.NS, "tap6", c.PeerNS, "q6")
	if _, err := vm.AddNIC(ctx, Interface{Name: "eth6", MAC: DeriveMAC("x", 6)}); !errors.Is(err, ErrConfig) {
		t.Errorf("AddNIC over a foreign tap6: %v; want ErrConfig", err)
	}
	h.LinkDel(mustLink(t, h, "tap6"))
	if qs, _ := h.QdiscList(mustLink(t, h, "eth6")); len(qs) > 0 && hasIngress(qs) {
		t.Error("a failed add left an ingress qdisc on eth6")
	}
	if got := len(vm.NICs()); got != 1 {
		t.Errorf("after a failed add the VM has %d NICs; want 1", got)
	}

	nic, err := vm.AddNIC(ctx, Interface{Name: "eth5", MAC: DeriveMAC("x", 5)})
	if err != nil {
		t.Fatal(err)
	}
	var pci []struct {
		Devices []struct {
			Slot   int    `json:"slot"`
			QdevID string `json:"qdev_id"`
		} `json:"devices"`
	}
	if err := vm.mon.run(ctx, "query-pci", nil, &pci); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, d := range pci[0].Devices {
		found = found || d.QdevID == nic.Device && d.Slot == nic.Slot
	}
	if !found {
		t.Errorf("QEMU has no device %s in slot %d: %+v", nic.Device, nic.Slot, pci)
	}
	t0 := time.Now()
	err = vm.RemoveNIC(ctx, "eth5")
	if !errors.Is(err, ErrNoHotplug) || !strings.Contains(err.Error(), "did not release the NIC within 10s") {
		t.Errorf("RemoveNIC from a guest without hot-plug: %v; want ErrNoHotplug after 10s", err)
	}
	if d := time.Since(t0); d < 9*time.Second {
		t.Errorf("RemoveNIC gave up after %v", d)
	}
	if got := len(vm.NICs()); got != 2 {
		t.Errorf("after a failed removal the VM has %d NICs; want 2 (eth5 stays)", got)
	}
	if err := vm.Stop(bg()); err != nil {
		t.Fatal(err)
	}
	qemulaunchtest.AssertClean(t, c.NS)
}

// HotplugNIC places data NIC N for ethN, and refuses what cannot be
// hot-plugged by name before anything changes.
func TestHotplugNICPlacement(t *testing.T) {
	im := &vmimage.Image{Dir: "/img/x", Manifest: vmimage.Manifest{Slug: "x", Kernel: "vmlinux"}}
	nic, err := Config{Name: "r1", Image: im}.HotplugNIC("eth5")
	if err != nil || nic.Index != 5 || nic.PCI != "07.0" || nic.Slot != 7 || nic.TAP != "tap5" || nic.Device != "nic5" || nic.Netdev != "hostnet5" || nic.GuestName != "eth5" {
		t.Errorf("HotplugNIC(eth5) = %+v, %v", nic, err)
	}
	// A layout with its own slots and names: the NIC goes where it says.
	named := &vmimage.Image{Dir: "/img/y", Manifest: vmimage.Manifest{Slug: "y", Kernel: "vmlinux",
		NICs: vmimage.NICLayout{Data: vmimage.PCIAddr{Slot: 10}}, NetworkInterfaces: []string{"swp1", "swp2"}}}
	if nic, err := (Config{Name: "r1", Image: named}).HotplugNIC("eth2"); err != nil || nic.PCI != "0b.0" || nic.Slot != 11 || nic.GuestName != "swp2" {
		t.Errorf("HotplugNIC(eth2) on a named layout = %+v, %v; want 0b.0, swp2", nic, err)
	}
	for _, tc := range []struct {
		cfg   Config
		iface string
		want  error
		msg   string
	}{
		{Config{Name: "r1", Image: im, Machine: "q35"}, "eth1", ErrNoHotplug, "root PCI Express bus of q35"},
		{Config{Name: "r1", Image: im, Machine: "pc-q35-7.2"}, "eth1", ErrNoHotplug, "q35"},
		{Config{Name: "r1", Image: im, Machine: "microvm"}, "eth1", ErrNoHotplug, "machine pc only"},
		{Config{Name: "r1", Image: im, Machine: "pc,acpi=off"}, "eth1", ErrNoHotplug, "without ACPI"},
		{Config{Name: "r1", Image: im, ExtraArgs: []string{"-no-acpi"}}, "eth1", ErrNoHotplug, "without ACPI"},
		{Config{Name: "r1", Image: im}, "eth0", ErrConfig, "ethN (N ≥ 1)"},
		{Config{Name: "r1", Image: im}, "swp1", ErrConfig, "ethN (N ≥ 1)"},
		{Config{Name: "r1", Image: im}, "eth99", vmimage.ErrNICLayout, "data NIC 99"},
		{Config{Name: "r1", Image: frrImage(), Machine: "pc"}, "eth3", ErrNoHotplug, "image frr lays its data NICs out as functions"},
	} {
		if _, err := tc.cfg.HotplugNIC(tc.iface); !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("machine %q %v: HotplugNIC(%s) = %v; want %v with %q", tc.cfg.Machine, tc.cfg.ExtraArgs, tc.iface, err, tc.want, tc.msg)
		}
	}
}

// The control socket carries errors as their sentinels, answers ErrBusy
// without a VM, and a request whose asker gives up still runs to its end.
func TestControlSocket(t *testing.T) {
	dir := StateDir(t.TempDir())
	var target nicChanger
	f := &fakeChanger{release: make(chan struct{})}
	srv, err := serveControl(dir, testLogger(t), func() nicChanger { return target })
	if err != nil {
		t.Fatal(err)
	}
	defer srv.close(dir)
	ctx := timeoutCtx(t, 10*time.Second)
	if _, err := AddNIC(ctx, dir, Interface{Name: "eth1", MAC: DeriveMAC("a", 1)}); !errors.Is(err, ErrBusy) {
		t.Errorf("AddNIC without a VM: %v; want ErrBusy", err)
	}
	target = f
	if err := RemoveNIC(ctx, dir, "eth9"); !errors.Is(err, ErrNoNIC) || strings.Count(err.Error(), "no such NIC") != 1 {
		t.Errorf("RemoveNIC(eth9) = %v; want ErrNoNIC, named once", err)
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if _, err := AddNIC(short, dir, Interface{Name: "eth1", MAC: DeriveMAC("a", 1)}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("AddNIC that outlives its context: %v", err)
	}
	close(f.release)
	deadline := time.Now().Add(5 * time.Second)
	for f.added() != "eth1" && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if f.added() != "eth1" {
		t.Error("the launcher did not finish the add its asker gave up on")
	}
	nic, err := AddNIC(ctx, dir, Interface{Name: "eth4", MAC: DeriveMAC("a", 4)})
	if err != nil || nic.Interface != "eth4" || nic.MAC != DeriveMAC("a", 4).String() {
		t.Errorf("AddNIC = %+v, %v", nic, err)
	}
}

type fakeChanger struct {
	release chan struct{}
	mu      sync.Mutex
	last    string
}

func (f *fakeChanger) AddNIC(_ context.Context, it Interface) (NIC, error) {
	<-f.release
	f.mu.Lock()
	f.last = it.Name
	f.mu.Unlock()
	return NIC{Interface: it.Name, MAC: it.MAC.String()}, nil
}

func (f *fakeChanger) added() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last
}

func (f *fakeChanger) RemoveNIC(_ context.Context, name string) error {
	return fmt.Errorf("%w: the VM has no NIC behind %s", ErrNoNIC, name)
}

// waitHealth waits until the health file says state.
func waitHealth(t *testing.T, dir StateDir, state string, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		s, d, _ := ReadHealth(dir)
		if s == state {
			return
		}
		if s == HealthFailed || time.Now().After(deadline) {
			t.Fatalf("health %q (%s); want %q", s, d, state)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func mustLink(t *testing.T, h *netlink.Handle, name string) netlink.Link {
	t.Helper()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func hasIngress(qs []netlink.Qdisc) bool {
	for _, q := range qs {
		if q.Type() == "ingress" {
			return true
		}
	}
	return false
}

// Data NICs behind ethN sit where the layout puts data NIC N, also with a
// gap (a link removed while the VM ran): a restarted VM has each NIC where
// it was hot-plugged, with the same QEMU IDs. Interfaces not all named
// ethN keep their positions.
func TestPlanPlacesByInterfaceNumber(t *testing.T) {
	t.Setenv(AccelEnv, "")
	im := &vmimage.Image{Dir: "/img/x", Manifest: vmimage.Manifest{Slug: "x", Kernel: "vmlinux"}}
	cfg := Config{Name: "r1", Image: im, Accel: AccelTCG, StateDir: "/s",
		Interfaces: []Interface{{Name: "eth1"}, {Name: "eth3"}}}
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Join(p.Args, " ")
	for _, want := range []string{"tap,id=hostnet1,ifname=tap1,", "id=nic1,netdev=hostnet1,mac=", ",addr=0x3",
		"tap,id=hostnet3,ifname=tap3,", "id=nic3,netdev=hostnet3,mac=", ",addr=0x5"} {
		if !strings.Contains(argv, want) {
			t.Errorf("argv lacks %q:\n%s", want, argv)
		}
	}
	cfg.Interfaces = []Interface{{Name: "swp1"}, {Name: "eth3"}}
	if p, err = cfg.Plan(); err != nil {
		t.Fatal(err)
	}
	if argv := strings.Join(p.Args, " "); !strings.Contains(argv, "id=nic2,netdev=hostnet2,") || !strings.Contains(argv, "addr=0x4") {
		t.Errorf("mixed names are not placed by position:\n%s", argv)
	}
}
