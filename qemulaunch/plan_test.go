package qemulaunch

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
)

var update = flag.Bool("update", false, "rewrite golden files")

func tinyImage() *vmimage.Image {
	return &vmimage.Image{Dir: "/img/tiny", Manifest: vmimage.Manifest{
		Version: vmimage.Version, Slug: "tiny", Kind: vmimage.KindInitramfs,
		Kernel: "vmlinux", KernelFormat: vmimage.KernelPVH, Initrd: "initramfs.cpio.gz",
		Cmdline:   "console=ttyS0 quiet",
		QEMU:      vmimage.QEMUHints{CPU: "qemu64,+rdrand"},
		Readiness: vmimage.Readiness{SerialRegex: "^ENDPOINTKIT READY", SSHPorts: []int{22}},
		Users:     vmimage.Credentials{SSHUser: "antidote", SSHPassword: "antidotepassword"},
	}}
}

func diskImage() *vmimage.Image {
	return &vmimage.Image{Dir: "/img/deb", Manifest: vmimage.Manifest{
		Version: vmimage.Version, Slug: "deb", Kind: vmimage.KindDebootstrap,
		Kernel: "vmlinuz", KernelFormat: vmimage.KernelBzImage, Initrd: "initrd.img",
		Cmdline: "root=/dev/vda console=ttyS0", Disk: "root.qcow2", Seed: "seed.iso",
		QEMU: vmimage.QEMUHints{MemoryMiB: 1024, CPUs: 2, CPU: "Skylake-Client", NICModel: "e1000", ExtraArgs: []string{"-rtc", "base=utc"}},
	}}
}

// frrImage lays its NICs out as Antidote's frr image did: the management
// NIC at 03.0, the data NICs as functions 1-7 of slot 3.
func frrImage() *vmimage.Image {
	im := diskImage()
	im.Manifest.Slug = "frr"
	im.Manifest.QEMU = vmimage.QEMUHints{NICModel: "virtio-net-pci", Machine: "q35"}
	im.Manifest.NICs = vmimage.NICLayout{Placement: vmimage.PlaceFunctions, Data: vmimage.PCIAddr{Slot: 3, Function: 1},
		Management: vmimage.PCIAddr{Slot: 3}, ManagementName: "enp0s3f0"}
	im.Manifest.NetworkInterfaces = []string{"enp0s3f1", "enp0s3f2"}
	return im
}

func mac(s string) net.HardwareAddr { m, _ := net.ParseMAC(s); return m }

func TestPlanGolden(t *testing.T) {
	t.Setenv(AccelEnv, "")
	cases := map[string]Config{
		"tiny_tcg": {
			Name: "r1", Image: tinyImage(), Accel: AccelTCG, StateDir: "/run/endpointkit/r1",
			LessonDir:  "/lessons/my,lesson",
			Forwards:   []Forward{{GuestPort: 22}, {GuestPort: 830, HostPort: 8830}, {Proto: "udp", GuestPort: 161}},
			Management: Management{Address: netip.MustParseAddr("10.0.0.5")},
			Interfaces: []Interface{{Name: "eth1", MTU: 9000}, {Name: "eth2", MTU: 1500, MAC: mac("02:00:00:00:00:02")}},
		},
		"frr_functions": {
			Name: "hub", Image: frrImage(), Accel: AccelTCG, StateDir: "/state/hub", LessonDir: "/lessons/frr",
			Forwards:   []Forward{{GuestPort: 22}},
			Interfaces: []Interface{{Name: "eth1", MTU: 1500}, {Name: "eth2", MTU: 1500}},
		},
		"disk_kvm_extra": {
			Name: "vqfx", Image: diskImage(), Accel: AccelKVM, StateDir: "/state/vqfx",
			Forwards:   []Forward{{GuestPort: 22}},
			Interfaces: []Interface{{Name: "eth1", TAP: "dp1"}},
			KernelArgs: []string{"net.ifnames=0"},
			ExtraArgs:  []string{"-device", "virtio-rng-pci"},
			Stitch:     StitchBridge,
		},
	}
	for name, cfg := range cases {
		t.Run(name, func(t *testing.T) {
			p, err := cfg.Plan()
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(append([]string{p.Binary}, p.Args...), "\n") + "\n"
			golden := filepath.Join("testdata", "plan_"+name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update)", err)
			}
			if got != string(want) {
				t.Errorf("argv differs from %s:\n--- got\n%s--- want\n%s", golden, got, want)
			}
		})
	}
}

func TestPlanDetails(t *testing.T) {
	t.Setenv(AccelEnv, "")
	cfg := Config{Name: "r1", Image: tinyImage(), Accel: AccelTCG,
		Interfaces: []Interface{{Name: "eth1"}, {Name: "eth3"}}}
	p, err := cfg.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Dir != "/run/endpointkit/r1" {
		t.Errorf("default state dir = %s", p.Dir)
	}
	if p.Interfaces[1].TAP != "tap3" {
		t.Errorf("TAP for eth3 = %q, want tap3", p.Interfaces[1].TAP)
	}
	if p.Interfaces[0].MAC.String() != DeriveMAC("r1", 1).String() || DeriveMAC("r1", 1).String() == DeriveMAC("r2", 1).String() {
		t.Errorf("MACs not derived per name and index")
	}
	if m := DeriveMAC("x", 0); m[0]&1 != 0 || m[0]&2 == 0 {
		t.Errorf("derived MAC %v not unicast+local", m)
	}
	if p.Timeouts.Serial != 4*60e9 {
		t.Errorf("TCG serial timeout = %v, want 4 min (scaled)", p.Timeouts.Serial)
	}
	if !strings.Contains(p.Command(), "'console=ttyS0 quiet endpointkit.hostname=r1'") {
		t.Errorf("command not quoted as expected: %s", p.Command())
	}
}

func TestPlanCPU(t *testing.T) {
	t.Setenv(AccelEnv, "")
	for _, tc := range []struct {
		cfg  Config
		want string // the -cpu value; "" for none
	}{
		{Config{Name: "r1", Image: tinyImage(), Accel: AccelTCG}, "qemu64,+rdrand"},  // the image's hint
		{Config{Name: "r1", Image: tinyImage(), Accel: AccelTCG, CPU: "max"}, "max"}, // the config's choice
		{Config{Name: "r1", Image: tinyImage(), Accel: AccelKVM}, "host"},            // KVM passes the host CPU
		{Config{Name: "r1", Image: &vmimage.Image{Dir: "/x", Manifest: diskImage().Manifest}, Accel: AccelTCG}, "Skylake-Client"},
		{Config{Name: "r1", Image: &vmimage.Image{Dir: "/x", Manifest: vmimage.Manifest{Slug: "x", Kernel: "k"}}, Accel: AccelTCG}, ""}, // QEMU's default
	} {
		p, err := tc.cfg.Plan()
		if err != nil {
			t.Fatal(err)
		}
		got := ""
		for i, a := range p.Args {
			if a == "-cpu" {
				got = p.Args[i+1]
			}
		}
		if got != tc.want {
			t.Errorf("%s/%s: -cpu %q; want %q", tc.cfg.Image.Manifest.Slug, tc.cfg.Accel, got, tc.want)
		}
	}
}

func TestPlanRejects(t *testing.T) {
	t.Setenv(AccelEnv, "")
	base := func() Config { return Config{Name: "r1", Image: tinyImage(), Accel: AccelTCG} }
	cases := map[string]struct {
		mod  func(*Config)
		want string
	}{
		"bad name":      {func(c *Config) { c.Name = "R_1" }, "Name"},
		"no image":      {func(c *Config) { c.Image = nil }, "Image"},
		"accel":         {func(c *Config) { c.Accel = "hvf" }, "Accel"},
		"auto":          {func(c *Config) { c.Accel = AccelAuto }, "resolved"},
		"stitch":        {func(c *Config) { c.Stitch = "ovs" }, "Stitch"},
		"port":          {func(c *Config) { c.Forwards = []Forward{{GuestPort: 70000}} }, "out of range"},
		"dup port":      {func(c *Config) { c.Forwards = []Forward{{GuestPort: 22}, {GuestPort: 22, HostPort: 2222}} }, "twice"},
		"dup host port": {func(c *Config) { c.Forwards = []Forward{{GuestPort: 22, HostPort: 2222}, {GuestPort: 2222}} }, "two forwards"},
		"proto":         {func(c *Config) { c.Forwards = []Forward{{GuestPort: 22, Proto: "sctp"}} }, "tcp or udp"},
		"iface dup":     {func(c *Config) { c.Interfaces = []Interface{{Name: "eth1"}, {Name: "eth1", TAP: "t9"}} }, "twice"},
		"iface mgmt":    {func(c *Config) { c.Interfaces = []Interface{{Name: "eth0"}} }, "twice"},
		"multicast MAC": {func(c *Config) { c.Interfaces = []Interface{{Name: "eth1", MAC: mac("01:00:5e:00:00:01")}} }, "unicast"},
		"empty extra":   {func(c *Config) { c.ExtraArgs = []string{""} }, "ExtraArgs"},
		"ipv6 mgmt": {func(c *Config) {
			c.Management.Address = netip.MustParseAddr("fd00::1")
			c.Forwards = []Forward{{GuestPort: 22}}
		}, "IPv4"},
		"no boot": {func(c *Config) { c.Image = &vmimage.Image{Dir: "/x", Manifest: vmimage.Manifest{Slug: "x"}} }, "neither a kernel nor a disk"},
		"disk bus": {func(c *Config) {
			im := diskImage()
			im.Manifest.QEMU.DiskBus = "nvme"
			c.Image = im
		}, "disk bus"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			c := base()
			tc.mod(&c)
			_, err := c.Plan()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tc.want)
			}
			if name != "no boot" && !errors.Is(err, ErrConfig) {
				t.Errorf("err does not wrap ErrConfig: %v", err)
			}
		})
	}
}

func TestAccelEnvOverride(t *testing.T) {
	t.Setenv(AccelEnv, "tcg")
	p, err := Config{Name: "r1", Image: tinyImage(), Accel: AccelKVM}.Plan()
	if err != nil {
		t.Fatal(err)
	}
	if p.Accel != AccelTCG {
		t.Errorf("accel = %s, want tcg from $%s", p.Accel, AccelEnv)
	}
}

func TestParsePorts(t *testing.T) {
	got, err := ParsePorts("22, 830,2222:22x")
	if err == nil {
		t.Fatalf("want error for 22x, got %v", got)
	}
	got, err = ParsePorts("22,830,161/udp,8022:22")
	if err != nil {
		t.Fatal(err)
	}
	want := []Forward{{"tcp", 22, 22}, {"tcp", 830, 830}, {"udp", 161, 161}, {"tcp", 8022, 22}}
	if len(got) != len(want) {
		t.Fatalf("got %v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("item %d = %v, want %v", i, got[i], want[i])
		}
	}
	for _, bad := range []string{"0", "65536", "22/sctp", "a:22"} {
		if _, err := ParsePorts(bad); err == nil {
			t.Errorf("ParsePorts(%q) accepted", bad)
		}
	}
}

func FuzzParsePorts(f *testing.F) {
	for _, s := range []string{"22,830", "161/udp", "8022:22", "", ",,", "1:2:3", "/tcp"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fs, err := ParsePorts(s)
		if err != nil {
			return
		}
		for _, f := range fs {
			if f.GuestPort < 1 || f.GuestPort > 65535 || f.HostPort < 1 || f.HostPort > 65535 {
				t.Fatalf("ParsePorts(%q) gave out-of-range %v", s, f)
			}
			if f.Proto != "tcp" && f.Proto != "udp" {
				t.Fatalf("ParsePorts(%q) gave proto %q", s, f.Proto)
			}
		}
	})
}

func TestFromEndpointAndMACs(t *testing.T) {
	t.Setenv(AccelEnv, "")
	ep := endpoint.Endpoint{Name: "vqfx1", Ports: []int{22, 830},
		ManagementMAC: mac("02:aa:00:00:00:00"),
		Interfaces: []endpoint.Interface{
			{Name: "eth1", MAC: mac("02:aa:00:00:00:01"), MTU: 9000},
			{Name: "eth2", MAC: mac("02:aa:00:00:00:02")},
		}}
	c := FromEndpoint(ep, tinyImage())
	c.Accel = AccelTCG
	p, err := c.Plan()
	if err != nil {
		t.Fatal(err)
	}
	argv := strings.Join(p.Args, " ")
	for _, want := range []string{"mac=02:aa:00:00:00:00,addr=0x2", "ifname=tap1", "mac=02:aa:00:00:00:01,addr=0x3,host_mtu=9000",
		"mac=02:aa:00:00:00:02,addr=0x4", "hostfwd=tcp::22-:22,hostfwd=tcp::830-:830"} {
		if !strings.Contains(argv, want) {
			t.Errorf("argv lacks %q:\n%s", want, argv)
		}
	}
	var d Config
	if err := d.ParseMACs("eth0=02:00:00:00:00:10, eth2=02:00:00:00:00:12"); err != nil {
		t.Fatal(err)
	}
	if d.Management.MAC.String() != "02:00:00:00:00:10" || len(d.Interfaces) != 1 || d.Interfaces[0].Name != "eth2" {
		t.Errorf("ParseMACs gave %+v", d)
	}
	if err := d.ParseMACs("eth10=02:00:00:00:00:1a,eth1=02:00:00:00:00:11"); err != nil || d.Interfaces[0].Name != "eth1" || d.Interfaces[2].Name != "eth10" {
		t.Errorf("not in ethN order: %+v %v", d.Interfaces, err)
	}
	for _, bad := range []string{"eth1", "eth1=zz", "=02:00:00:00:00:01", "eth1=01:00:5e:00:00:01"} {
		if err := d.ParseMACs(bad); err == nil {
			t.Errorf("ParseMACs(%q) accepted", bad)
		}
	}
}

// TestPlanNICLayoutCapacity: more interfaces than the image's layout holds
// is refused before anything starts, naming the layout; a layout that
// cannot be placed is the image's fault.
func TestPlanNICLayoutCapacity(t *testing.T) {
	t.Setenv(AccelEnv, "")
	cfg := Config{Name: "hub", Image: frrImage(), Accel: AccelTCG, StateDir: "/state/hub"}
	for i := 1; i <= 8; i++ {
		cfg.Interfaces = append(cfg.Interfaces, Interface{Name: fmt.Sprintf("eth%d", i)})
	}
	_, err := cfg.Plan()
	if !errors.Is(err, ErrConfig) || !errors.Is(err, vmimage.ErrNICLayout) {
		t.Fatalf("Plan with 8 NICs = %v; want ErrConfig and ErrNICLayout", err)
	}
	for _, want := range []string{"8 data interfaces", "image frr's NIC layout holds 7", "functions 1-7 of slot 3"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	cfg.Interfaces = cfg.Interfaces[:7]
	p, err := cfg.Plan()
	if err != nil {
		t.Fatalf("Plan with 7 NICs: %v", err)
	}
	if argv := strings.Join(p.Args, " "); !strings.Contains(argv, "addr=0x3.0x7 ") {
		t.Errorf("NIC 7 not at 03.7:\n%s", argv)
	}

	bad := frrImage()
	bad.Manifest.NICs.Management = vmimage.PCIAddr{Slot: 4}
	cfg.Image = bad
	if _, err := cfg.Plan(); !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "function 0 of slot 3 would be empty") {
		t.Errorf("unplaceable layout: %v; want ErrImage naming the empty function 0", err)
	}
}
