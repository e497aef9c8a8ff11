package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Exit codes of `endpoint run`.
const (
	exitOK       = 0
	exitFailed   = 1
	exitUsage    = 2
	exitQuit     = 3
	exitKilled   = 4
	exitDied     = 5
	consoleTailN = 4000
)

// errUsage marks command-line mistakes.
var errUsage = errors.New("usage")

// exitError carries an exit code chosen by a command.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

func exitCode(err error) int {
	var ee *exitError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ee):
		return ee.code
	case errors.Is(err, errUsage), errors.Is(err, flag.ErrHelp):
		return exitUsage
	}
	return exitFailed
}

// Run runs the endpoint command line args (without the program name).
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	cmds := map[string]func(context.Context, []string, io.Reader, io.Writer, io.Writer) error{
		"run":     runRun,
		"console": runConsole,
		"health":  runHealth,
	}
	if len(args) == 0 || cmds[args[0]] == nil {
		fmt.Fprintln(stderr, "usage: endpoint run|console|health [flags]  (endpoint COMMAND -h for flags)")
		if len(args) == 0 {
			return fmt.Errorf("%w: no command", errUsage)
		}
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
	return cmds[args[0]](ctx, args[1:], stdin, stdout, stderr)
}

// runOpts are the settings of `endpoint run`.
type runOpts struct {
	image, lesson, name, forward, accel, stitch, state, netns, macs string
	interfaces                                                      int
	grace                                                           time.Duration
	keepOverlay                                                     bool
}

// runFlags defines run's flags, each defaulting to its ENDPOINT_* variable.
func runFlags(stderr io.Writer, env func(string) string) (*flag.FlagSet, *runOpts, error) {
	o := &runOpts{}
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	str := func(p *string, name, usage string) {
		fs.StringVar(p, name, env("ENDPOINT_"+envName(name)), usage+" ($ENDPOINT_"+envName(name)+")")
	}
	str(&o.image, "image", "image directory (holding manifest.json); required")
	str(&o.lesson, "lesson", "lesson directory shared read-only over 9p (tag antidote)")
	str(&o.name, "name", "instance name and guest hostname (default: this host's name)")
	str(&o.forward, "forward", "guest ports forwarded from eth0's address, e.g. 22,830,161/udp (default: the image's APIs)")
	str(&o.accel, "accel", "accelerator: auto, kvm or tcg (default auto; $ENDPOINTKIT_ACCEL also works)")
	str(&o.stitch, "stitch", "how ethN joins tapN: mirred or bridge (default mirred)")
	str(&o.state, "state", "state directory (default /run/endpointkit/NAME)")
	str(&o.macs, "macs", "guest NIC MACs, e.g. eth0=02:…,eth1=02:… (default: derived from the name)")
	str(&o.netns, "netns", "named network namespace to run in (default: the current one)")
	var err error
	num := func(name string) string { return env("ENDPOINT_" + envName(name)) }
	if v := num("interfaces"); v != "" {
		if o.interfaces, err = strconv.Atoi(v); err != nil {
			return nil, nil, fmt.Errorf("%w: $ENDPOINT_INTERFACES=%q: not a number", errUsage, v)
		}
	}
	fs.IntVar(&o.interfaces, "interfaces", o.interfaces, "data interfaces eth1…ethN to wait for (default: those present) ($ENDPOINT_INTERFACES)")
	o.grace = 0
	if v := num("grace"); v != "" {
		if o.grace, err = time.ParseDuration(v); err != nil {
			return nil, nil, fmt.Errorf("%w: $ENDPOINT_GRACE=%q: %v", errUsage, v, err)
		}
	}
	fs.DurationVar(&o.grace, "grace", o.grace, "how long the guest gets to power off on SIGTERM before QEMU is quit (default 20s, x4 under TCG) ($ENDPOINT_GRACE)")
	o.keepOverlay = num("keep-overlay") == "1" || num("keep-overlay") == "true"
	fs.BoolVar(&o.keepOverlay, "keep-overlay", o.keepOverlay, "keep overlay.qcow2 in the state directory after exit ($ENDPOINT_KEEP_OVERLAY)")
	return fs, o, nil
}

func envName(flag string) string { return strings.ToUpper(strings.ReplaceAll(flag, "-", "_")) }

// config turns the options into a launcher config.
func (o *runOpts) config(log *slog.Logger) (qemulaunch.Config, error) {
	if o.image == "" {
		return qemulaunch.Config{}, fmt.Errorf("%w: --image is required", errUsage)
	}
	im, err := vmimage.Load(o.image)
	if err != nil {
		return qemulaunch.Config{}, fmt.Errorf("--image %s: %w", o.image, err)
	}
	name := o.name
	if name == "" {
		if name, err = os.Hostname(); err != nil {
			return qemulaunch.Config{}, fmt.Errorf("%w: --name not given and no hostname: %v", errUsage, err)
		}
	}
	var fwd []qemulaunch.Forward
	if o.forward != "" {
		if fwd, err = qemulaunch.ParsePorts(o.forward); err != nil {
			return qemulaunch.Config{}, fmt.Errorf("%w: --forward: %v", errUsage, err)
		}
	} else {
		fwd = imagePorts(im.Manifest)
	}
	cfg := qemulaunch.Config{
		Name: name, Image: im, LessonDir: o.lesson, StateDir: o.state, NetNS: o.netns,
		Accel: qemulaunch.Accel(o.accel), Stitch: qemulaunch.StitchMode(o.stitch),
		Forwards: fwd, DataInterfaces: o.interfaces, KeepOverlay: o.keepOverlay,
		Timeouts: qemulaunch.Timeouts{StopGrace: o.grace},
		Logger:   log,
	}
	if o.macs != "" {
		if err := cfg.ParseMACs(o.macs); err != nil {
			return cfg, fmt.Errorf("%w: --%v", errUsage, err)
		}
		if len(cfg.Interfaces) > 0 && o.interfaces > len(cfg.Interfaces) {
			return cfg, fmt.Errorf("%w: --macs names %d data interfaces but --interfaces is %d", errUsage, len(cfg.Interfaces), o.interfaces)
		}
	}
	return cfg, nil
}

// imagePorts are the guest ports an image declares: its APIs and its
// readiness ports.
func imagePorts(m vmimage.Manifest) []qemulaunch.Forward {
	set := map[int]bool{}
	for _, p := range append(append([]int{m.APIs.SSH, m.APIs.NETCONF}, m.APIs.HTTP...), append(m.Readiness.SSHPorts, m.Readiness.TCPPorts...)...) {
		if p > 0 {
			set[p] = true
		}
	}
	ports := make([]int, 0, len(set))
	for p := range set {
		ports = append(ports, p)
	}
	sort.Ints(ports)
	fs := make([]qemulaunch.Forward, len(ports))
	for i, p := range ports {
		fs[i] = qemulaunch.Forward{GuestPort: p}
	}
	return fs
}

func runRun(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	fs, o, err := runFlags(stderr, os.Getenv)
	if err != nil {
		return err
	}
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	cfg, err := o.config(log)
	if err != nil {
		return err
	}
	// Signals are caught from here on: SIGTERM/SIGINT mean a graceful stop.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	startCtx, cancelStart := context.WithCancel(ctx)
	defer cancelStart()
	go func() {
		select {
		case <-sigs: // a signal during start-up aborts it
			cancelStart()
		case <-startCtx.Done():
		}
	}()
	t0 := time.Now()
	vm, err := qemulaunch.Start(startCtx, cfg)
	if err != nil {
		return err
	}
	cancelStart()
	fmt.Fprintf(stdout, "endpoint %s: QEMU started (pid %d, %s)\n", cfg.Name, vm.PID(), vm.Plan().Accel)
	readyc := make(chan error, 1)
	readyCtx, cancelReady := context.WithCancel(ctx)
	defer cancelReady()
	go func() { readyc <- vm.Ready(readyCtx) }()
	for {
		select {
		case err := <-readyc:
			readyc = nil
			if err != nil {
				fmt.Fprintf(stderr, "endpoint %s: %v\nconsole tail:\n%s\n", cfg.Name, err, vm.Console().Tail(consoleTailN))
				vm.Stop(ctx)
				return &exitError{exitFailed, err.Error()}
			}
			fmt.Fprintf(stdout, "endpoint %s: ready in %.2fs%s\n", cfg.Name, time.Since(t0).Seconds(), describeForwards(vm))
		case sig := <-sigs:
			fmt.Fprintf(stdout, "endpoint %s: %v: stopping\n", cfg.Name, sig)
			cancelReady()
			vm.Stop(ctx)
			return exitFor(vm, cfg.Name, stderr)
		case <-vm.Done():
			return exitFor(vm, cfg.Name, stderr)
		case <-ctx.Done():
			vm.Stop(context.Background())
			return exitFor(vm, cfg.Name, stderr)
		}
	}
}

func describeForwards(vm *qemulaunch.VM) string {
	var parts []string
	for _, f := range vm.Forwards() {
		parts = append(parts, fmt.Sprintf("%s:%d->%d/%s", vm.ManagementAddr(), f.HostPort, f.GuestPort, f.Proto))
	}
	if len(parts) == 0 {
		return ""
	}
	return " (" + strings.Join(parts, ", ") + ")"
}

// exitFor maps how QEMU ended to run's exit status, printing the console
// tail when it was not a clean poweroff.
func exitFor(vm *qemulaunch.VM, name string, stderr io.Writer) error {
	ex, _ := vm.Wait(context.Background())
	msg := fmt.Sprintf("endpoint %s: QEMU ended: %s", name, ex)
	code := map[qemulaunch.ExitReason]int{
		qemulaunch.ExitPoweredOff: exitOK, qemulaunch.ExitStopped: exitOK,
		qemulaunch.ExitQuit: exitQuit, qemulaunch.ExitKilled: exitKilled, qemulaunch.ExitDied: exitDied,
	}[ex.Reason]
	if code == exitOK {
		fmt.Fprintln(stderr, msg)
		return nil
	}
	fmt.Fprintf(stderr, "%s\nconsole tail:\n%s\n", msg, vm.Console().Tail(consoleTailN))
	if ex.Stderr != "" {
		fmt.Fprintf(stderr, "QEMU stderr:\n%s\n", ex.Stderr)
	}
	return &exitError{code, msg}
}
