package qemulaunch

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
)

// ErrAlreadyRunning is returned by Start when another live launcher owns
// the state directory.
var ErrAlreadyRunning = errors.New("qemulaunch: instance already running")

// VM is a running QEMU instance started by [Start].
type VM struct {
	cfg  Config
	plan *Plan
	log  *slog.Logger
	env  *netEnv
	cmd  *exec.Cmd

	console *Console
	stderr  *tailBuffer
	stdin   *os.File

	mu      sync.Mutex
	mon     *monitor
	stopReq ExitReason // what Stop/Kill asked for last ("" = nothing)
	undo    []func() error
	// nics are the data NICs by container interface, boot and added,
	// each with its own undo (run by cleanup before undo); hot serialises
	// AddNIC and RemoveNIC; watching is set once links are watched.
	nics     map[string]*nicState
	hot      sync.Mutex
	watching bool
	cleaned  bool          // cleanup ran: a NIC added now must undo itself
	procDone chan struct{} // QEMU reaped
	started  chan struct{} // Start finished (cleanup must not race it)
	exited   chan struct{} // reaped and cleaned up; exit is final
	exit     Exit
	readyAt  time.Time
	// hostKeys are the guest's SSH host keys readiness pins: the
	// manifest's, or those learned from the console.
	hostKeys []vmimage.HostKey
}

// Start resolves the accelerator, waits for the container interfaces,
// checks the image and the forwarded ports, creates the overlay, TAPs and
// stitches, starts QEMU (inside Config.NetNS when set) and connects to its
// QMP socket. It returns once QEMU runs; call [VM.Ready] to wait for the
// guest.
//
// ctx bounds start-up only: cancelling it while Start runs aborts and
// removes everything created so far; cancelling it after Start returned
// does nothing to the VM, which runs until [VM.Stop], [VM.Kill], the guest
// powering off, or QEMU dying. Any failure leaves no TAP, qdisc, bridge,
// socket, overlay or QEMU process behind.
func Start(ctx context.Context, cfg Config) (*VM, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	if log == nil {
		log = discard()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	if err := checkImage(ctx, cfg.Image, false); err != nil {
		return nil, err
	}
	if cfg.LessonDir != "" {
		abs, err := filepath.Abs(cfg.LessonDir)
		if err == nil {
			var st os.FileInfo
			if st, err = os.Stat(abs); err == nil && !st.IsDir() {
				err = errors.New("not a directory")
			}
		}
		if err != nil {
			return nil, configErr("LessonDir", "%s: %v", cfg.LessonDir, err)
		}
		cfg.LessonDir = abs
	}
	dir := StateDir(cfg.StateDir)
	if err := claimStateDir(dir); err != nil {
		return nil, err
	}
	cfg, err := withIdentity(cfg)
	if err != nil {
		os.Remove(dir.LauncherPID())
		return nil, err
	}
	vm := &VM{cfg: cfg, log: log, procDone: make(chan struct{}), started: make(chan struct{}), exited: make(chan struct{}),
		nics: map[string]*nicState{}}
	vm.undo = append(vm.undo, func() error { os.Remove(dir.LauncherPID()); return nil })
	writeHealth(dir.Health(), HealthStarting, "")
	err = vm.start(ctx)
	close(vm.started)
	if err != nil {
		if vm.cmd != nil && vm.cmd.Process != nil {
			vm.kill()
			<-vm.exited
		} else {
			vm.cleanup()
		}
		detail := err.Error()
		writeHealth(dir.Health(), HealthFailed, detail)
		if tail := vm.stderrTail(); tail != "" {
			err = fmt.Errorf("%w\nQEMU said: %s", err, tail)
		}
		return nil, err
	}
	return vm, nil
}

// claimStateDir creates dir and records this process as its launcher,
// refusing when a live launcher already owns it.
func claimStateDir(dir StateDir) error {
	if err := os.MkdirAll(string(dir), 0o700); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	if b, err := os.ReadFile(dir.LauncherPID()); err == nil {
		pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
		if pid > 0 && pid != os.Getpid() && syscall.Kill(pid, 0) == nil {
			return fmt.Errorf("%w: %s belongs to launcher pid %d; stop it or use another --state", ErrAlreadyRunning, dir, pid)
		}
	}
	return os.WriteFile(dir.LauncherPID(), []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644)
}

func (vm *VM) start(ctx context.Context) error {
	cfg := vm.cfg
	env, err := openNetEnv(cfg.NetNS)
	if err != nil {
		return err
	}
	vm.env = env
	vm.undo = append(vm.undo, func() error { env.close(); return nil })

	type accelResult struct {
		a   Accel
		err error
	}
	// Hashing the kernel and initrd (tens of ms) runs beside the rest of
	// start-up and the first moments of the boot; Start fails (and kills
	// QEMU) if it finds corruption.
	hashc := make(chan error, 1)
	go func() { hashc <- checkImage(ctx, cfg.Image, true) }()
	accelc := make(chan accelResult, 1)
	go func() {
		a, err := ResolveAccel(ctx, cfg.Accel, cfg.Binary, vm.log)
		accelc <- accelResult{a, err}
	}()

	w := want{count: cfg.DataInterfaces}
	if len(cfg.Forwards) > 0 && !cfg.Management.Address.IsValid() {
		w.mgmt = cfg.Management.Interface
	}
	if len(cfg.Interfaces) > 0 {
		w.explicit = true
		for _, it := range cfg.Interfaces {
			w.names = append(w.names, it.Name)
		}
	}
	t0 := time.Now()
	found, err := env.discover(ctx, w, cfg.Timeouts.Interfaces)
	ar := <-accelc
	if err != nil {
		return err
	}
	if ar.err != nil {
		return ar.err
	}
	if w.mgmt != "" {
		cfg.Management.Address = found.mgmtAddr
	}
	if !w.explicit {
		cfg.Interfaces = nil
		for _, l := range found.data {
			cfg.Interfaces = append(cfg.Interfaces, Interface{Name: l.Attrs().Name})
		}
	}
	for i := range cfg.Interfaces {
		if cfg.Interfaces[i].MTU == 0 {
			cfg.Interfaces[i].MTU = found.data[i].Attrs().MTU
		}
	}
	vm.log.Info("interfaces found", "management", cfg.Management.Address, "data", len(found.data), "took", time.Since(t0).Round(time.Millisecond))
	if cfg.Forwards, err = env.resolveForwards(cfg.Management.Address, cfg.Forwards); err != nil {
		return err
	}
	cfg.Accel = ar.a
	plan, err := cfg.Plan()
	if err != nil {
		return err
	}
	vm.cfg, vm.plan = cfg, plan

	if plan.Overlay != "" {
		vm.undo = append(vm.undo, func() error {
			if !cfg.KeepOverlay {
				os.Remove(plan.Overlay)
			}
			return nil
		})
		if err := createOverlay(ctx, plan.BaseDisk, plan.BaseFormat, plan.Overlay, cfg.reuseOverlay); err != nil {
			return err
		}
	}
	for i, it := range plan.Interfaces {
		place, err := cfg.placeNIC(cfg.dataIndex(i))
		if err != nil {
			return err
		}
		ns := &nicState{NIC: place}
		ns.Interface, ns.TAP, ns.MAC, ns.MTU = it.Name, it.TAP, it.MAC.String(), it.MTU
		ns.Netdev, ns.Device = nicIDs(ns.Index)
		vm.mu.Lock()
		vm.nics[it.Name] = ns // before stitching: cleanup undoes what was done
		vm.mu.Unlock()
		if ns.rec, err = vm.stitchOne(ns.Index, it, found.data[i], &ns.undo); err != nil {
			return err
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	execErr := vm.exec(ctx)
	if err := <-hashc; err != nil {
		return err
	}
	if execErr != nil {
		return execErr
	}
	if len(plan.Interfaces) > 0 {
		vm.watchLinks()
	}
	return nil
}

// stitchOne creates the TAP for one interface (data NIC index) and joins
// it to eth, appending what undoes each step to undo.
func (vm *VM) stitchOne(index int, it Interface, eth netlink.Link, undo *[]func() error) (*stitchRec, error) {
	env := vm.env
	tap, err := env.createTAP(it.TAP, vm.cfg.Name, it.MTU)
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", it.Name, err)
	}
	*undo = append(*undo, func() error {
		if err := env.h.LinkDel(tap); err != nil {
			return fmt.Errorf("delete TAP %s: %w", it.TAP, err)
		}
		return nil
	})
	if err := env.disableTXChecksum(it.Name); err != nil {
		vm.log.Warn("could not disable TX checksum offload", "interface", it.Name, "err", err)
	}
	st, err := stitcherFor(vm.plan.Stitch, vm.cfg.Name, index)
	if err != nil {
		return nil, err
	}
	*undo = append(*undo, func() error {
		cur, err := env.h.LinkByName(it.Name)
		if err != nil {
			cur = nil // gone: nothing of ours left on it
		}
		return st.unstitch(env, cur, tap)
	})
	if err := st.stitch(env, eth, tap); err != nil {
		return nil, fmt.Errorf("interface %s: stitch (%s): %w", it.Name, vm.plan.Stitch, err)
	}
	vm.log.Info("stitched", "interface", it.Name, "tap", it.TAP, "mode", vm.plan.Stitch, "mtu", it.MTU)
	return &stitchRec{it: it, st: st, eth: eth, tap: tap}, nil
}

// exec starts QEMU and connects QMP.
func (vm *VM) exec(ctx context.Context) error {
	p := vm.plan
	dir := p.Dir
	for _, f := range []string{dir.QMPSocket(), dir.ConsoleSocket()} {
		os.Remove(f)
	}
	if err := os.WriteFile(dir.Argv(), []byte(strings.Join(append([]string{p.Binary}, p.Args...), "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("state dir: %w", err)
	}
	inR, inW, err := os.Pipe()
	if err != nil {
		return err
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return err
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		outR.Close()
		outW.Close()
		return err
	}
	console, err := newConsole(dir.ConsoleLog(), inW, vm.log)
	if err != nil {
		for _, f := range []*os.File{inR, inW, outR, outW, errR, errW} {
			f.Close()
		}
		return err
	}
	vm.console, vm.stdin = console, inW
	vm.stderr = &tailBuffer{max: 16 << 10}
	cmd := exec.Command(p.Binary, p.Args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = inR, outW, errW
	cmd.Dir = string(dir)
	// QEMU must not outlive a launcher killed with -9 (Pdeathsig), and
	// must not get the terminal's Ctrl-C or a process-group SIGTERM meant
	// for the launcher (its own process group): QEMU exits at once on
	// those, while the launcher turns them into a graceful poweroff.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true}
	vm.log.Info("starting QEMU", "accel", p.Accel, "command", p.Command())
	err = vm.env.do(cmd.Start)
	inR.Close()
	outW.Close()
	errW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		errR.Close()
		if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("QEMU binary %q not found: install qemu-system-x86 (make deps)", p.Binary)
		}
		return fmt.Errorf("start QEMU: %w", err)
	}
	vm.cmd = cmd
	os.WriteFile(dir.QEMUPID(), []byte(strconv.Itoa(cmd.Process.Pid)+"\n"), 0o644)
	go console.pump(outR)
	stderrDone := make(chan struct{})
	go func() {
		defer close(stderrDone)
		sc := bufio.NewScanner(errR)
		for sc.Scan() {
			vm.stderr.Write(append(sc.Bytes(), '\n'))
			vm.log.Warn("qemu: " + sc.Text())
		}
		errR.Close()
	}()
	go vm.supervise(outR, stderrDone)

	mon, err := dialQMP(ctx, dir.QMPSocket(), p.Timeouts.QMP, p.Timeouts.QMPCommand, vm.procDone)
	if err != nil {
		return err
	}
	vm.mu.Lock()
	vm.mon = mon
	vm.mu.Unlock()
	if err := console.serve(dir.ConsoleSocket()); err != nil {
		return err
	}
	return nil
}

// supervise reaps QEMU, records how it ended and cleans up.
func (vm *VM) supervise(out *os.File, stderrDone <-chan struct{}) {
	werr := vm.cmd.Wait()
	close(vm.procDone)
	<-vm.started // Start sees procDone and returns; only then clean up
	// The console and stderr pipes reach EOF when QEMU is gone; bound the
	// wait in case something inherited them.
	select {
	case <-vm.console.Done():
	case <-time.After(2 * time.Second):
		out.Close()
	}
	select {
	case <-stderrDone:
	case <-time.After(time.Second):
	}
	vm.mu.Lock()
	mon := vm.mon
	req := vm.stopReq
	vm.mu.Unlock()
	var shutdown *Event
	if mon != nil {
		mon.close()
		shutdown = mon.shutdownEvent()
	}
	ex := classifyExit(req, shutdown, vm.cmd.ProcessState, werr)
	ex.Stderr = vm.stderrTail()
	vm.stdin.Close()
	cerr := vm.cleanup()
	if cerr != nil {
		vm.log.Error("cleanup incomplete", "err", cerr)
	}
	switch {
	case ex.Reason == ExitDied:
		writeHealth(vm.plan.Dir.Health(), HealthFailed, ex.String())
	default:
		writeHealth(vm.plan.Dir.Health(), HealthStopped, ex.String())
	}
	vm.log.Info("QEMU ended", "how", ex.String())
	vm.mu.Lock()
	vm.exit = ex
	vm.mu.Unlock()
	close(vm.exited)
}

// cleanup runs the undo stack in reverse and removes runtime files.
func (vm *VM) cleanup() error {
	var errs []error
	if vm.console != nil {
		vm.console.closeServer(StateDir(vm.cfg.StateDir).ConsoleSocket())
	}
	dir := StateDir(vm.cfg.StateDir)
	for _, f := range []string{dir.QMPSocket(), dir.QEMUPID(), dir.Argv()} {
		os.Remove(f)
	}
	vm.mu.Lock()
	undo := vm.undo
	vm.undo = nil
	for _, ns := range vm.nics { // the NICs' TAPs and stitches, before the namespace handle closes
		undo = append(undo, ns.undo...)
	}
	vm.nics = map[string]*nicState{}
	vm.cleaned = true
	vm.mu.Unlock()
	for i := len(undo) - 1; i >= 0; i-- {
		if err := undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	if vm.env != nil {
		if left, _ := vm.env.ownedLinks(vm.cfg.Name); len(left) > 0 {
			errs = append(errs, fmt.Errorf("links still present after cleanup: %v", left))
		}
	}
	return errors.Join(errs...)
}

// Plan returns the plan the VM was started from (accelerator, resolved
// ports and interfaces, command line).
func (vm *VM) Plan() *Plan { return vm.plan }

// Forwards returns the forwards with their actual host ports.
func (vm *VM) Forwards() []Forward { return vm.plan.Forwards }

// ManagementAddr is the address forwarded ports listen on (invalid: all).
func (vm *VM) ManagementAddr() netip.Addr { return vm.cfg.Management.Address }

// Console returns the serial console.
func (vm *VM) Console() *Console { return vm.console }

// PID returns QEMU's process ID.
func (vm *VM) PID() int { return vm.cmd.Process.Pid }

// Done is closed once QEMU has exited and cleanup has finished.
func (vm *VM) Done() <-chan struct{} { return vm.exited }

// Status asks QEMU for its run state over QMP.
func (vm *VM) Status(ctx context.Context) (Status, error) {
	vm.mu.Lock()
	mon := vm.mon
	vm.mu.Unlock()
	if mon == nil {
		return Status{}, ErrQMPClosed
	}
	return mon.status(ctx)
}

func (vm *VM) stderrTail() string {
	if vm.stderr == nil {
		return ""
	}
	return strings.TrimSpace(vm.stderr.String())
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
