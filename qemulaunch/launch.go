package qemulaunch

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
)

// ErrUsage marks a launcher command line or environment that cannot be
// read (`endpoint run` exits [ExitCodeUsage]).
var ErrUsage = errors.New("usage")

// EnvPrefix starts the environment variable of every [Launch] field:
// ENDPOINT_IMAGE, ENDPOINT_FORWARD, … (the flag's name in upper case,
// dashes as underscores).
const EnvPrefix = "ENDPOINT_"

// Launch is the launcher contract: everything `endpoint run` is told, as
// plain data. The orchestration renders it with [Launch.Args] (a process on
// this machine) or [Launch.Env] (an endpoint container's environment);
// the launcher reads either back with [ParseLaunch] and turns it into the
// [Config] that [Start] takes with [Launch.Config]. For every Launch that
// [Launch.Validate] accepts, parsing what Args or Env render gives the same
// Launch back (fuzzed).
type Launch struct {
	Image  string // image directory (holding manifest.json); required
	Lesson string // lesson directory shared read-only over 9p
	// Name is the instance name and guest hostname; "" means this host's
	// name.
	Name  string
	State string // state directory; "" means DefaultStateRoot/Name
	// Identity is the instance identity made elsewhere, for an image that
	// takes one (Config.IdentityFile); "" means made and kept in State.
	Identity string
	NetNS    string // named network namespace to run in; "" the current one
	// Forwards are the guest ports forwarded from the management address;
	// nil means the image's ([ExposedPorts] without lesson ports).
	Forwards []Forward
	// Listen is the IPv4 address the forwards listen on; "" means eth0's.
	// "0.0.0.0" also takes the namespace's loopback, where a container
	// runtime's port forward (kubectl port-forward) connects.
	Listen string
	Accel  Accel      // "" means auto ($ENDPOINTKIT_ACCEL overrides)
	Stitch StitchMode // "" means mirred
	// Interfaces is how many data interfaces eth1…ethN to wait for; 0
	// means those present.
	Interfaces int
	// MACs are guest NIC addresses by container interface (eth0: the
	// management NIC); the rest are derived from Name.
	MACs        []InterfaceMAC
	Grace       time.Duration // guest poweroff on SIGTERM; 0 means 20s (×4 under TCG)
	KeepOverlay bool          // keep overlay.qcow2 after exit
	// Restart is when the VM is started again after it ended unasked
	// ("" is on-failure); MaxRestarts bounds the restarts in a row (0 is
	// DefaultMaxRestarts). See [Supervise].
	Restart     RestartPolicy
	MaxRestarts int
	// KeepState keeps the state directory after a clean stop (by default
	// the launcher removes it).
	KeepState bool
}

// SuperviseOptions are the launch's restart policy and state-directory
// choice as [Supervise] takes them; the caller adds the writers and the
// signal channels.
func (l Launch) SuperviseOptions() SuperviseOptions {
	return SuperviseOptions{Policy: l.Restart, MaxRestarts: l.MaxRestarts, KeepState: l.KeepState}
}

// InterfaceMAC is the guest NIC address behind one container interface.
type InterfaceMAC struct {
	Interface string
	MAC       net.HardwareAddr
}

// launchFlags names the string fields of a Launch by flag, in the order
// Args renders them.
func (l *Launch) strings() []struct {
	name, usage string
	p           *string
} {
	return []struct {
		name, usage string
		p           *string
	}{
		{"image", "image directory (holding manifest.json); required", &l.Image},
		{"lesson", "lesson directory shared read-only over 9p (tag antidote)", &l.Lesson},
		{"name", "instance name and guest hostname (default: this host's name)", &l.Name},
		{"state", "state directory (default /run/endpointkit/NAME)", &l.State},
		{"identity", "instance identity file made elsewhere, for an image that takes one (default: made and kept in the state directory)", &l.Identity},
		{"netns", "named network namespace to run in (default: the current one)", &l.NetNS},
		{"accel", "accelerator: auto, kvm or tcg (default auto; $ENDPOINTKIT_ACCEL also works)", (*string)(&l.Accel)},
		{"stitch", "how ethN joins tapN: mirred or bridge (default mirred)", (*string)(&l.Stitch)},
		{"listen", "IPv4 address the forwarded ports listen on (default: eth0's; 0.0.0.0 adds loopback, for port forwards)", &l.Listen},
		{"restart", "when a VM that ended unasked is started again: on-failure, always or never (default on-failure)", (*string)(&l.Restart)},
	}
}

// values renders every set field as flag name → value, in a fixed order.
func (l Launch) values() [][2]string {
	var kv [][2]string
	for _, s := range l.strings() {
		if *s.p != "" {
			kv = append(kv, [2]string{s.name, *s.p})
		}
	}
	if len(l.Forwards) > 0 {
		kv = append(kv, [2]string{"forward", FormatPorts(l.Forwards)})
	}
	if l.Interfaces > 0 {
		kv = append(kv, [2]string{"interfaces", strconv.Itoa(l.Interfaces)})
	}
	if len(l.MACs) > 0 {
		macs := make([]string, len(l.MACs))
		for i, m := range l.MACs {
			macs[i] = m.Interface + "=" + m.MAC.String()
		}
		kv = append(kv, [2]string{"macs", strings.Join(macs, ",")})
	}
	if l.Grace > 0 {
		kv = append(kv, [2]string{"grace", l.Grace.String()})
	}
	if l.KeepOverlay {
		kv = append(kv, [2]string{"keep-overlay", "true"})
	}
	if l.MaxRestarts > 0 {
		kv = append(kv, [2]string{"max-restarts", strconv.Itoa(l.MaxRestarts)})
	}
	if l.KeepState {
		kv = append(kv, [2]string{"keep-state", "true"})
	}
	return kv
}

// Args renders the launch as the arguments of the launcher binary:
// "run" and its flags.
func (l Launch) Args() []string {
	args := []string{"run"}
	for _, kv := range l.values() {
		args = append(args, "--"+kv[0]+"="+kv[1])
	}
	return args
}

// Env renders the launch as ENDPOINT_* environment variables (NAME=VALUE),
// for an endpoint container whose entrypoint is `endpoint run`.
func (l Launch) Env() []string {
	var env []string
	for _, kv := range l.values() {
		env = append(env, EnvName(kv[0])+"="+kv[1])
	}
	return env
}

// EnvName is the environment variable of a launcher flag.
func EnvName(flag string) string {
	return EnvPrefix + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

// ParseLaunch reads `endpoint run`'s flags (args, without "run"), each
// defaulting to its ENDPOINT_* variable as getenv returns it; flags win.
// -h prints the flags to usage. Errors wrap [ErrUsage].
func ParseLaunch(args []string, getenv func(string) string, usage io.Writer) (Launch, error) {
	var l Launch
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(usage)
	for _, s := range l.strings() {
		fs.StringVar(s.p, s.name, getenv(EnvName(s.name)), s.usage+" ($"+EnvName(s.name)+")")
	}
	forward := fs.String("forward", getenv(EnvName("forward")), "guest ports forwarded from eth0's address, e.g. 22,830,161/udp (default: the image's APIs) ($ENDPOINT_FORWARD)")
	macs := fs.String("macs", getenv(EnvName("macs")), "guest NIC MACs, e.g. eth0=02:…,eth1=02:… (default: derived from the name) ($ENDPOINT_MACS)")
	var err error
	if v := getenv(EnvName("interfaces")); v != "" {
		if l.Interfaces, err = strconv.Atoi(v); err != nil {
			return Launch{}, fmt.Errorf("%w: $%s=%q: not a number", ErrUsage, EnvName("interfaces"), v)
		}
	}
	fs.IntVar(&l.Interfaces, "interfaces", l.Interfaces, "data interfaces eth1…ethN to wait for (default: those present) ($ENDPOINT_INTERFACES)")
	if v := getenv(EnvName("grace")); v != "" {
		if l.Grace, err = time.ParseDuration(v); err != nil {
			return Launch{}, fmt.Errorf("%w: $%s=%q: %v", ErrUsage, EnvName("grace"), v, err)
		}
	}
	fs.DurationVar(&l.Grace, "grace", l.Grace, "how long the guest gets to power off on SIGTERM before QEMU is quit (default 20s, x4 under TCG) ($ENDPOINT_GRACE)")
	v := getenv(EnvName("keep-overlay"))
	l.KeepOverlay = v == "1" || v == "true"
	fs.BoolVar(&l.KeepOverlay, "keep-overlay", l.KeepOverlay, "keep overlay.qcow2 in the state directory after exit ($ENDPOINT_KEEP_OVERLAY)")
	v = getenv(EnvName("keep-state"))
	l.KeepState = v == "1" || v == "true"
	fs.BoolVar(&l.KeepState, "keep-state", l.KeepState, "keep the state directory after a clean stop ($ENDPOINT_KEEP_STATE)")
	if v := getenv(EnvName("max-restarts")); v != "" {
		if l.MaxRestarts, err = strconv.Atoi(v); err != nil {
			return Launch{}, fmt.Errorf("%w: $%s=%q: not a number", ErrUsage, EnvName("max-restarts"), v)
		}
	}
	fs.IntVar(&l.MaxRestarts, "max-restarts", l.MaxRestarts, fmt.Sprintf("restarts in a row before giving up (default %d) ($ENDPOINT_MAX_RESTARTS)", DefaultMaxRestarts))
	if err := fs.Parse(args); err != nil {
		return Launch{}, fmt.Errorf("%w: %v", ErrUsage, err)
	}
	if fs.NArg() > 0 {
		return Launch{}, fmt.Errorf("%w: unexpected arguments %q", ErrUsage, fs.Args())
	}
	if *forward != "" {
		if l.Forwards, err = ParsePorts(*forward); err != nil {
			return Launch{}, fmt.Errorf("%w: --forward: %v", ErrUsage, err)
		}
	}
	if *macs != "" {
		if l.MACs, err = parseMACs(*macs); err != nil {
			return Launch{}, fmt.Errorf("%w: --%v", ErrUsage, err)
		}
	}
	if _, err := ParseRestartPolicy(string(l.Restart)); err != nil {
		return Launch{}, fmt.Errorf("--restart: %w", err)
	}
	return l, nil
}

// Validate reports whether the launch can be rendered and read back as it
// is: no NUL in text, counts and durations not negative,
// forwards with an explicit protocol (tcp, udp) and host port, MACs
// unicast on named interfaces.
func (l Launch) Validate() error {
	for _, s := range l.strings() {
		if strings.ContainsAny(*s.p, "\x00") {
			return configErr("Launch."+s.name, "%q contains NUL", *s.p)
		}
	}
	for _, f := range l.Forwards {
		if (f.Proto != "tcp" && f.Proto != "udp") || f.GuestPort < 1 || f.GuestPort > 65535 || f.HostPort < 1 || f.HostPort > 65535 {
			return configErr("Launch.Forwards", "%s: want tcp or udp and ports 1-65535", f)
		}
	}
	if l.Interfaces < 0 || l.Grace < 0 || l.MaxRestarts < 0 {
		return configErr("Launch", "negative interfaces (%d), grace (%v) or max restarts (%d)", l.Interfaces, l.Grace, l.MaxRestarts)
	}
	if _, err := ParseRestartPolicy(string(l.Restart)); err != nil {
		return configErr("Launch.Restart", "%v", err)
	}
	for _, m := range l.MACs {
		if m.Interface == "" || strings.ContainsAny(m.Interface, ",= \t\n\r\v\f\x00") || len(m.MAC) != 6 || m.MAC[0]&1 != 0 {
			return configErr("Launch.MACs", "%q=%v: want an interface name and a unicast MAC", m.Interface, m.MAC)
		}
	}
	return nil
}

// Config loads the image and turns the launch into the Config [Start]
// takes: the name defaults to this host's name, the forwards to the
// image's ports. log goes into Config.Logger.
func (l Launch) Config(log *slog.Logger) (Config, error) {
	if l.Image == "" {
		return Config{}, fmt.Errorf("%w: --image is required", ErrUsage)
	}
	im, err := vmimage.Load(l.Image)
	if err != nil {
		return Config{}, fmt.Errorf("--image %s: %w", l.Image, err)
	}
	if l.Name == "" {
		if l.Name, err = os.Hostname(); err != nil {
			return Config{}, fmt.Errorf("%w: --name not given and no hostname: %v", ErrUsage, err)
		}
	}
	cfg := l.config(im)
	cfg.Logger = log
	if l.Listen != "" {
		a, err := netip.ParseAddr(l.Listen)
		if err != nil || !a.Is4() {
			return cfg, fmt.Errorf("%w: --listen %q: want an IPv4 address", ErrUsage, l.Listen)
		}
		cfg.Management.Address = a
	}
	if len(cfg.Interfaces) > 0 && l.Interfaces > len(cfg.Interfaces) {
		return cfg, fmt.Errorf("%w: --macs names %d data interfaces but --interfaces is %d", ErrUsage, len(cfg.Interfaces), l.Interfaces)
	}
	return cfg, nil
}

// config maps the launch onto a Config for the loaded image im (no I/O).
func (l Launch) config(im *vmimage.Image) Config {
	fwd := l.Forwards
	if fwd == nil {
		fwd = ExposedPorts(nil, im.Manifest)
	}
	cfg := Config{
		Name: l.Name, Image: im, LessonDir: l.Lesson, StateDir: l.State, IdentityFile: l.Identity, NetNS: l.NetNS,
		Accel: l.Accel, Stitch: l.Stitch, Forwards: fwd, DataInterfaces: l.Interfaces,
		KeepOverlay: l.KeepOverlay, Timeouts: Timeouts{StopGrace: l.Grace},
	}
	cfg.applyMACs(l.MACs)
	return cfg
}

// LaunchFor is the launch of one endpoint of the lesson model with its
// image: its name, the ports [ExposedPorts] decides, its data-interface
// count and every NIC's MAC. The lesson and state directories, the
// network namespace, accelerator and grace are left for the caller.
func LaunchFor(ep endpoint.Endpoint, im *vmimage.Image) Launch {
	l := Launch{Name: ep.Name, Image: im.Dir, Forwards: ExposedPorts(ep.Ports, im.Manifest), Interfaces: len(ep.Interfaces)}
	l.MACs = append(l.MACs, InterfaceMAC{"eth0", ep.ManagementMAC})
	for _, it := range ep.Interfaces {
		l.MACs = append(l.MACs, InterfaceMAC{it.Name, it.MAC})
	}
	return l
}

// ExposedPorts is the port policy, decided here once: the guest ports an
// endpoint exposes on its management address are the lesson's
// (presentations, then additionalPorts: lessonPorts, in their order), then
// the image's management APIs (SSH, NETCONF, HTTP) and readiness ports in
// ascending order, each once — configuration and readiness need those
// even when the lesson does not present them. Host port = guest port:
// each endpoint has a management address of its own.
func ExposedPorts(lessonPorts []int, m vmimage.Manifest) []Forward {
	var out []Forward
	seen := map[int]bool{}
	add := func(p int) {
		if p > 0 && p <= 65535 && !seen[p] {
			seen[p] = true
			out = append(out, Forward{Proto: "tcp", HostPort: p, GuestPort: p})
		}
	}
	for _, p := range lessonPorts {
		add(p)
	}
	image := append([]int{m.APIs.SSH, m.APIs.NETCONF}, m.APIs.HTTP...)
	image = append(append(image, m.Readiness.SSHPorts...), m.Readiness.TCPPorts...)
	slices.Sort(image)
	for _, p := range image {
		add(p)
	}
	return out
}
