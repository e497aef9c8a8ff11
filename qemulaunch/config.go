package qemulaunch

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
)

// Accel names a QEMU accelerator choice.
type Accel string

// Accelerators. [AccelAuto] proves KVM runs a guest before using it and
// otherwise falls back to [AccelTCG] (see [ResolveAccel]).
const (
	AccelAuto Accel = "auto"
	AccelKVM  Accel = "kvm"
	AccelTCG  Accel = "tcg"
)

// AccelEnv overrides Config.Accel when set (auto, kvm or tcg); CI sets it to
// tcg to skip the KVM probe on machines where KVM is known not to work.
const AccelEnv = "ENDPOINTKIT_ACCEL"

// StitchMode is how a TAP is joined to its container interface.
type StitchMode string

// Stitch modes.
const (
	// StitchMirred redirects every frame between ethN and tapN with an
	// ingress qdisc, a u32 match-all filter and a mirred action, in both
	// directions. Transparent to LLDP, LACP and STP.
	StitchMirred StitchMode = "mirred"
	// StitchBridge puts ethN and tapN in a Linux bridge whose
	// group_fwd_mask lets LLDP through (LACP and STP are not forwarded).
	StitchBridge StitchMode = "bridge"
)

// DefaultStateRoot is the parent of per-instance state directories.
const DefaultStateRoot = "/run/endpointkit"

// AutoPort as a Forward's HostPort asks Start to pick a free port; the port
// chosen is reported by [VM.Forwards].
const AutoPort = -1

// Forward is one management port forward: HostPort on the management
// address (the container's eth0) reaches GuestPort on the guest's primary NIC.
type Forward struct {
	Proto     string // "tcp" (default) or "udp"
	HostPort  int    // 0: same as GuestPort; AutoPort: any free port
	GuestPort int
}

func (f Forward) proto() string {
	if f.Proto == "" {
		return "tcp"
	}
	return f.Proto
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d->%d", f.proto(), f.HostPort, f.GuestPort)
}

// Interface is one data-plane interface: the container's ethN and the VM
// NIC behind it.
type Interface struct {
	Name string           // container interface, e.g. "eth1"
	TAP  string           // TAP name; default "tap" + the number of Name
	MAC  net.HardwareAddr // guest NIC address; default derived from Config.Name
	MTU  int              // 0: the container interface's MTU (discovered by Start)
}

// Management says where forwarded ports listen.
type Management struct {
	// Interface is the container interface whose address forwarded ports
	// bind to; default "eth0". Ignored when Address is set.
	Interface string
	// Address, when valid, is used instead of the interface's address.
	Address netip.Addr
	// MAC of the guest's management NIC; default derived from Config.Name.
	MAC net.HardwareAddr
}

// Timeouts bound each phase. Zero fields take the defaults shown; the
// guest-speed phases (Serial, SSH, StopGrace) are multiplied by TCGFactor
// when the VM runs under TCG.
type Timeouts struct {
	Interfaces time.Duration // waiting for ethN to appear: 30s
	QMP        time.Duration // QMP socket up and answering: 10s
	QMPCommand time.Duration // each QMP command: 5s
	Serial     time.Duration // the manifest's serial regex: max(10×BootSeconds, 60s)
	SSH        time.Duration // SSH handshakes after the serial marker: 30s
	StopGrace  time.Duration // guest poweroff after system_powerdown: 20s
	TCGFactor  int           // multiplier under TCG: TCGSlowDown
}

// TCGSlowDown is how many times slower a guest runs under TCG than under
// KVM, as far as deadlines go: guest-speed deadlines are multiplied by it
// (Timeouts.TCGFactor's default, Accel.SlowDown).
const TCGSlowDown = 4

// SlowDown is the factor guest-speed deadlines get under a: TCGSlowDown
// for TCG, else 1.
func (a Accel) SlowDown() int {
	if a == AccelTCG {
		return TCGSlowDown
	}
	return 1
}

func (t Timeouts) withDefaults(bootSeconds int) Timeouts {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&t.Interfaces, 30*time.Second)
	def(&t.QMP, 10*time.Second)
	def(&t.QMPCommand, 5*time.Second)
	// Deadlines detect a stuck boot; they are not performance targets, and
	// this machine may be shared: ten times the expected boot, at least 60s.
	serial := max(60*time.Second, 10*time.Duration(bootSeconds)*time.Second)
	def(&t.Serial, serial)
	def(&t.SSH, 30*time.Second)
	def(&t.StopGrace, 20*time.Second)
	if t.TCGFactor <= 0 {
		t.TCGFactor = TCGSlowDown
	}
	return t
}

// scaled returns the guest-speed timeouts multiplied for accel.
func (t Timeouts) scaled(accel Accel) Timeouts {
	if accel != AccelTCG {
		return t
	}
	f := time.Duration(t.TCGFactor)
	t.Serial *= f
	t.SSH *= f
	t.StopGrace *= f
	return t
}

// Config is the plain-data description of one VM instance. [Config.Plan]
// turns it into a QEMU command line without starting anything; [Start]
// first resolves what only the running system knows (accelerator,
// interfaces, addresses) and then plans and starts.
type Config struct {
	// Name is the instance name: QEMU's -name, the guest hostname
	// (endpointkit.hostname=Name on the kernel command line) and the
	// default state directory. Required; a DNS label.
	Name string
	// Image is the loaded image directory. Required.
	Image *vmimage.Image
	// LessonDir, when set, is shared read-only over 9p with mount tag
	// "antidote".
	LessonDir string
	// NetNS is the named network namespace (/run/netns/NetNS) the VM's
	// interfaces live in and QEMU runs in; "" means the caller's own (as
	// in a container, where `endpoint run` is the entrypoint).
	NetNS string
	// StateDir is the instance's state directory (see [StateDir]);
	// default DefaultStateRoot/Name.
	StateDir string
	// IdentityFile, for an image that takes a per-instance identity
	// (vmimage.IdentityFWCfg), is an identity made elsewhere
	// ([vmimage.LoadIdentity]'s JSON; a cluster runtime mounts it from a
	// Secret): the guest gets it and its keys are pinned, and Start fails
	// when it cannot be read. "" means the identity kept in StateDir,
	// made on first use ([InstanceHostKeys] reads the same).
	IdentityFile string
	// Binary is the QEMU system emulator; default "qemu-system-x86_64".
	Binary string
	// Accel is the accelerator; default auto, overridden by $ENDPOINTKIT_ACCEL.
	Accel Accel
	// MemoryMiB and CPUs default to the image's hints, else 512 and 1.
	MemoryMiB int
	CPUs      int
	// Machine defaults to the image's hint, else "pc" (i440fx boots
	// measurably faster than q35 under TCG).
	Machine string
	// CPU is the -cpu model under TCG; default the image's hint, else
	// QEMU's default. With KVM the host CPU is passed through.
	CPU string
	// NICModel defaults to the image's hint, else "virtio-net-pci".
	NICModel string
	// Forwards are exactly the ports exposed on the management address.
	Forwards   []Forward
	Management Management
	// Interfaces are the data-plane interfaces in NIC order. Start waits
	// (bounded) for them; when empty, Start takes eth1…ethN for N =
	// DataInterfaces, or every ethN present when DataInterfaces is 0.
	Interfaces     []Interface
	DataInterfaces int
	// Stitch is how TAPs join their interfaces; default mirred.
	Stitch StitchMode
	// KernelArgs are appended to the manifest's kernel command line.
	KernelArgs []string
	// ExtraArgs are appended verbatim to the QEMU command line (the escape
	// hatch for anything this package does not model).
	ExtraArgs []string
	// KeepOverlay keeps the overlay disk in the state directory after QEMU
	// exits (for inspection); by default it is removed with the rest.
	KeepOverlay bool
	Timeouts    Timeouts
	// Logger receives progress and diagnostics; nil discards them.
	Logger *slog.Logger

	// reuseOverlay keeps an overlay already in the state directory
	// (Supervise restarting a guest on the disk it wrote).
	reuseOverlay bool
}

// Config errors. Validation errors wrap ErrConfig and name the field.
var (
	ErrConfig = errors.New("qemulaunch: invalid config")
	ErrImage  = errors.New("qemulaunch: unusable image")
)

func configErr(field, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrConfig, field, fmt.Sprintf(format, args...))
}

// withDefaults returns a copy with every default filled in (no I/O except
// reading $ENDPOINTKIT_ACCEL).
func (c Config) withDefaults() Config {
	if c.Binary == "" {
		c.Binary = "qemu-system-x86_64"
	}
	if env := os.Getenv(AccelEnv); env != "" {
		c.Accel = Accel(env)
	}
	if c.Accel == "" {
		c.Accel = AccelAuto
	}
	if c.StateDir == "" && c.Name != "" {
		c.StateDir = DefaultStateRoot + "/" + c.Name
	}
	if c.Stitch == "" {
		c.Stitch = StitchMirred
	}
	if c.Management.Interface == "" {
		c.Management.Interface = "eth0"
	}
	if c.Management.MAC == nil {
		c.Management.MAC = DeriveMAC(c.Name, 0)
	}
	var hints vmimage.QEMUHints
	var boot int
	if c.Image != nil {
		hints = c.Image.Manifest.QEMU
		boot = c.Image.Manifest.Readiness.BootSeconds
	}
	pick := func(v *int, hint, def int) {
		if *v <= 0 {
			*v = hint
		}
		if *v <= 0 {
			*v = def
		}
	}
	pick(&c.MemoryMiB, hints.MemoryMiB, 512)
	pick(&c.CPUs, hints.CPUs, 1)
	pickS := func(v *string, hint, def string) {
		if *v == "" {
			*v = hint
		}
		if *v == "" {
			*v = def
		}
	}
	pickS(&c.Machine, hints.Machine, "pc")
	pickS(&c.CPU, hints.CPU, "")
	pickS(&c.NICModel, hints.NICModel, "virtio-net-pci")
	ifs := make([]Interface, len(c.Interfaces))
	for i, it := range c.Interfaces {
		if it.TAP == "" {
			it.TAP = "tap" + strings.TrimLeft(it.Name, "abcdefghijklmnopqrstuvwxyz_-.")
		}
		if it.MAC == nil {
			it.MAC = DeriveMAC(c.Name, i+1)
		}
		ifs[i] = it
	}
	c.Interfaces = ifs
	c.Timeouts = c.Timeouts.withDefaults(boot)
	return c
}

// validate checks the defaulted config; it does not touch the filesystem.
func (c Config) validate() error {
	if !isDNSLabel(c.Name) {
		return configErr("Name", "%q is not a DNS label (a-z, 0-9, '-', at most 63 characters): pass --name", c.Name)
	}
	if c.Image == nil {
		return configErr("Image", "no image: pass --image with an image directory")
	}
	switch c.Accel {
	case AccelAuto, AccelKVM, AccelTCG:
	default:
		return configErr("Accel", "%q is not one of auto, kvm, tcg", c.Accel)
	}
	switch c.Stitch {
	case StitchMirred, StitchBridge:
	default:
		return configErr("Stitch", "%q is not one of mirred, bridge", c.Stitch)
	}
	if c.MemoryMiB < 64 {
		return configErr("MemoryMiB", "%d is below 64", c.MemoryMiB)
	}
	if c.CPUs > 64 {
		return configErr("CPUs", "%d is above 64", c.CPUs)
	}
	seen := map[string]bool{}
	for _, f := range c.Forwards {
		if f.proto() != "tcp" && f.proto() != "udp" {
			return configErr("Forwards", "%s: protocol must be tcp or udp", f)
		}
		if f.GuestPort < 1 || f.GuestPort > 65535 {
			return configErr("Forwards", "guest port %d out of range 1-65535", f.GuestPort)
		}
		if f.HostPort < AutoPort || f.HostPort > 65535 {
			return configErr("Forwards", "host port %d out of range 1-65535", f.HostPort)
		}
		key := f.proto() + "/" + strconv.Itoa(f.GuestPort)
		if seen[key] {
			return configErr("Forwards", "guest port %s forwarded twice", key)
		}
		seen[key] = true
		host := f.HostPort
		if host == 0 {
			host = f.GuestPort
		}
		hkey := "host " + f.proto() + "/" + strconv.Itoa(host)
		if host != AutoPort && seen[hkey] {
			return configErr("Forwards", "host port %s used by two forwards", hkey[5:])
		}
		seen[hkey] = true
	}
	names := map[string]bool{c.Management.Interface: true}
	for i, it := range c.Interfaces {
		field := fmt.Sprintf("Interfaces[%d]", i)
		if it.Name == "" || len(it.Name) > 15 || strings.ContainsAny(it.Name, "/ \t\n:") {
			return configErr(field, "bad interface name %q", it.Name)
		}
		if len(it.TAP) > 15 || it.TAP == "" || strings.ContainsAny(it.TAP, "/ \t\n:,") {
			return configErr(field, "bad TAP name %q", it.TAP)
		}
		if names[it.Name] || names[it.TAP] {
			return configErr(field, "name %q or %q used twice", it.Name, it.TAP)
		}
		names[it.Name], names[it.TAP] = true, true
		if len(it.MAC) != 6 || it.MAC[0]&1 != 0 {
			return configErr(field, "MAC %v is not a unicast Ethernet address", it.MAC)
		}
		if it.MTU < 0 || it.MTU > 65535 {
			return configErr(field, "MTU %d out of range", it.MTU)
		}
	}
	for i, a := range c.ExtraArgs {
		if a == "" {
			return configErr(fmt.Sprintf("ExtraArgs[%d]", i), "empty argument")
		}
	}
	return nil
}

// DeriveMAC returns a stable, locally administered unicast MAC for NIC
// index (0 = management, N = ethN) of the instance name.
func DeriveMAC(name string, index int) net.HardwareAddr {
	sum := sha256.Sum256([]byte("endpointkit/" + name + "/" + strconv.Itoa(index)))
	mac := net.HardwareAddr(sum[:6])
	mac[0] = mac[0]&0xfc | 0x02
	return mac
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-') {
			return false
		}
	}
	return true
}
