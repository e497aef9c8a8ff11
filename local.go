package endpointkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
	"github.com/vishvananda/netlink"
)

// LauncherName is the launcher binary's name (cmd/endpoint).
const LauncherName = "endpoint"

// tailBytes is how much of a console or log an error quotes.
const tailBytes = 3000

// localRuntime is the Runtime of this machine: a network namespace per
// endpoint and the links between them (wiring.Local), and per endpoint a
// launcher process (`endpoint run`, as qemulaunch.Launch renders it) in its
// namespace, in its own session, with its output in DIR/EP.log and its
// state in DIR/EP. Endpoints are reached at their management addresses.
type localRuntime struct {
	opts     Options
	launcher string // the launcher binary (FindLauncher)

	mu sync.Mutex
	// exited holds, by launcher state directory, a channel closed when a
	// launcher this process started ends.
	exited map[string]chan struct{}
}

var _ Runtime = (*localRuntime)(nil)

func newLocalRuntime(opts Options) *localRuntime {
	return &localRuntime{opts: opts, exited: map[string]chan struct{}{}}
}

// Place wires the namespaces and links, then starts every launcher.
func (r *localRuntime) Place(ctx context.Context, p *Placement) error {
	st, err := r.apply(ctx, p)
	if err != nil {
		return err
	}
	for _, el := range p.Endpoints {
		name := el.Endpoint.Name
		es, _ := st.Endpoint(name)
		sd := launcherDir(p.Dir, name)
		err := p.Record(name, func(e *RunningEndpoint) {
			e.Namespace, e.Address = es.Namespace, es.MgmtAddress.Addr()
			e.StateDir, e.ConsoleSocket, e.Log = sd, qemulaunch.StateDir(sd).ConsoleSocket(), filepath.Join(p.Dir, name+".log")
		})
		if err != nil {
			return err
		}
	}
	p.Report(StepWire, "", fmt.Sprintf("%d namespaces, %d links, management %s", len(st.Endpoints), len(p.Wiring.Links), st.MgmtSubnet))
	for _, el := range p.Endpoints {
		if err := r.start(st, p, el); err != nil {
			return err
		}
	}
	return nil
}

// maxSocketPath is the longest unix socket path the kernel binds
// (sizeof(sun_path) - 1).
const maxSocketPath = 107

// launcherDir is the launcher state directory of endpoint name in the
// instance directory dir: dir/name, unless its sockets' paths would be too
// long for the kernel (a 63-character endpoint name under a long state
// root), then dir/<start of name>~<hash>, as long as fits.
func launcherDir(dir, name string) string {
	sd := filepath.Join(dir, name)
	if len(qemulaunch.StateDir(sd).ConsoleSocket()) <= maxSocketPath {
		return sd
	}
	sum := sha256.Sum256([]byte(name))
	tag := "~" + hex.EncodeToString(sum[:4])
	keep := maxSocketPath - len(qemulaunch.StateDir(filepath.Join(dir, tag)).ConsoleSocket())
	return filepath.Join(dir, name[:max(0, min(keep, len(name)))]+tag)
}

// start runs one endpoint's launcher in its namespace.
func (r *localRuntime) start(st *wiring.State, p *Placement, el EndpointLaunch) error {
	name := el.Endpoint.Name
	l := el.Launch
	// The instance's directory is the orchestration's: a launcher that
	// ends cleanly leaves its part (and a per-instance identity) for the
	// next launcher or for Teardown.
	l.State, l.KeepState = launcherDir(p.Dir, name), true
	if err := os.MkdirAll(l.State, 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(p.Dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	// Its own session: a Ctrl-C on the terminal that ran `lesson up` does
	// not reach it. The accelerator resolved once for all goes in the
	// environment too, so an inherited $ENDPOINTKIT_ACCEL cannot override it.
	cmd := exec.Command(r.launcher, l.Args()...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(os.Environ(), qemulaunch.AccelEnv+"="+string(l.Accel))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = st.Start(name, cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("endpoint %s: start %s: %w", name, r.launcher, err)
	}
	exited := make(chan struct{})
	r.mu.Lock()
	r.exited[l.State] = exited
	r.mu.Unlock()
	go func() {
		_ = cmd.Wait() // reaps it; the exit status is in the log and the health file
		close(exited)
	}()
	if err := p.Record(name, func(e *RunningEndpoint) { e.PID = cmd.Process.Pid }); err != nil {
		return err
	}
	p.Report(StepBoot, name, fmt.Sprintf("%s booting (%s, pid %d)", name, el.Endpoint.Image, cmd.Process.Pid))
	return nil
}

// Ready polls the launcher's health file until it says ready, the
// launcher ends, or ctx ends.
func (r *localRuntime) Ready(ctx context.Context, ep RunningEndpoint) error {
	r.mu.Lock()
	exited := r.exited[ep.StateDir]
	r.mu.Unlock()
	sd := qemulaunch.StateDir(ep.StateDir)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	check := func() (bool, error) {
		state, detail, err := qemulaunch.ReadHealth(sd)
		switch {
		case err != nil:
			return false, nil
		case state == qemulaunch.HealthReady:
			return true, nil
		case state == qemulaunch.HealthFailed:
			return false, errors.New(detail)
		case state == qemulaunch.HealthStopped || state == qemulaunch.HealthStopping:
			return false, errors.New("the VM stopped while booting")
		}
		return false, nil
	}
	for {
		if ok, err := check(); ok || err != nil {
			return err
		}
		if exited == nil && !qemulaunch.LauncherRunning(ep.PID, ep.StateDir) {
			if ok, err := check(); ok || err != nil {
				return err
			}
			return errors.New("the launcher is not running")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-exited:
			if ok, err := check(); ok || err != nil {
				return err
			}
			return errors.New("the launcher exited before the guest was ready")
		case <-tick.C:
		}
	}
}

// Reach is the management address and the port forwarded to guestPort.
func (r *localRuntime) Reach(_ context.Context, ep RunningEndpoint, guestPort int) (netip.AddrPort, error) {
	if !ep.Address.IsValid() {
		return netip.AddrPort{}, fmt.Errorf("endpoint %s has no management address (not placed)", ep.Name)
	}
	port := guestPort
	for _, p := range ep.Ports {
		if p.Guest == guestPort {
			port = p.Host
		}
	}
	return netip.AddrPortFrom(ep.Address, uint16(port)), nil
}

// Console dials the launcher's console socket.
func (r *localRuntime) Console(ctx context.Context, ep RunningEndpoint) (io.ReadWriteCloser, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", ep.ConsoleSocket)
}

// Logs tails the console log and the launcher's log file.
func (r *localRuntime) Logs(_ context.Context, ep RunningEndpoint) Logs {
	return Logs{Console: tail(qemulaunch.StateDir(ep.StateDir).ConsoleLog(), tailBytes), Launcher: tail(ep.Log, tailBytes), Where: ep.Log}
}

// Observe looks at the launcher process, its health and restarts files,
// and the endpoint's namespace and interfaces.
func (r *localRuntime) Observe(_ context.Context, ep RunningEndpoint) Observation {
	sd := qemulaunch.StateDir(ep.StateDir)
	o := Observation{Running: qemulaunch.LauncherRunning(ep.PID, ep.StateDir)}
	if state, detail, err := qemulaunch.ReadHealth(sd); err == nil {
		o.Health, o.Detail = state, detail
	}
	if rs, err := qemulaunch.ReadRestarts(sd); err == nil {
		o.Restarts, o.LastExit = rs.Count, rs.LastExit
	}
	o.Boot = fmt.Sprintf("%d.%d", ep.PID, o.Restarts)
	o.Wiring, o.NamespaceGone = wiringProblem(ep)
	return o
}

// wiringProblem says what is missing of the endpoint's namespace and the
// interfaces its wiring state lists.
func wiringProblem(ep RunningEndpoint) (string, bool) {
	if ep.Namespace == "" {
		return "", false
	}
	if !nsutil.Exists(ep.Namespace) {
		return "namespace " + ep.Namespace + " is gone", true
	}
	st, err := wiring.LoadState(filepath.Dir(ep.StateDir))
	if err != nil {
		return "", false
	}
	es, ok := st.Endpoint(ep.Name)
	if !ok {
		return "", false
	}
	h, err := nsutil.Handle(ep.Namespace)
	if err != nil {
		return "", false
	}
	defer h.Close()
	var missing []string
	for _, name := range append([]string{"eth0"}, es.Interfaces...) {
		if _, err := h.LinkByName(name); err != nil {
			missing = append(missing, name)
		}
	}
	if len(missing) > 0 {
		return "interfaces missing in " + ep.Namespace + ": " + strings.Join(missing, ", "), false
	}
	return "", false
}

// Restart restarts the VM in place (a signal to its launcher) when the
// launcher runs in its namespace; otherwise it stops what is left of the
// endpoint, repairs the wiring and starts a new launcher.
func (r *localRuntime) Restart(ctx context.Context, p *Placement, ep RunningEndpoint, reset bool) error {
	sig := syscall.SIGUSR1
	if reset {
		sig = syscall.SIGUSR2
	}
	if qemulaunch.LauncherRunning(ep.PID, ep.StateDir) && nsutil.Exists(ep.Namespace) {
		if err := syscall.Kill(ep.PID, sig); err != nil {
			return fmt.Errorf("endpoint %s: signal its launcher (pid %d): %w", ep.Name, ep.PID, err)
		}
		return nil
	}
	// What is left: the launcher (it may run on in a namespace whose name
	// was deleted) and its QEMU.
	if qemulaunch.LauncherRunning(ep.PID, ep.StateDir) {
		_ = syscall.Kill(ep.PID, syscall.SIGKILL)
	}
	if err := qemulaunch.StopProcesses(ctx, ep.StateDir+"/", 0); err != nil {
		return fmt.Errorf("endpoint %s: %w", ep.Name, err)
	}
	waitGone(ctx, ep.PID, ep.StateDir)
	if reset {
		os.Remove(qemulaunch.StateDir(ep.StateDir).Overlay())
	}
	var el *EndpointLaunch
	for k := range p.Endpoints {
		if p.Endpoints[k].Endpoint.Name == ep.Name {
			el = &p.Endpoints[k]
		}
	}
	if el == nil {
		return fmt.Errorf("endpoint %s is no longer in the lesson", ep.Name)
	}
	st, err := r.apply(ctx, p)
	if err != nil {
		return err
	}
	// The new eth0 has a new MAC: the host's neighbour entry for the
	// management address would hold traffic to it until it went stale.
	forgetNeighbour(st.HostLink, ep.Address)
	return r.start(st, p, *el)
}

// forgetNeighbour deletes the host's neighbour entries for addr on link.
func forgetNeighbour(link string, addr netip.Addr) {
	l, err := netlink.LinkByName(link)
	if err != nil || !addr.IsValid() {
		return
	}
	neighs, _ := netlink.NeighList(l.Attrs().Index, netlink.FAMILY_V4)
	for _, n := range neighs {
		if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == addr {
			_ = netlink.NeighDel(&n)
		}
	}
}

// Repair applies the wiring plan again: wiring.Local.Apply converges.
func (r *localRuntime) Repair(ctx context.Context, p *Placement) error {
	_, err := r.apply(ctx, p)
	return err
}

// apply finds the launcher and applies the instance's wiring plan.
func (r *localRuntime) apply(ctx context.Context, p *Placement) (*wiring.State, error) {
	if r.launcher == "" {
		var err error
		if r.launcher, err = FindLauncher(r.opts.Launcher); err != nil {
			return nil, err
		}
	}
	local := &wiring.Local{StateRoot: filepath.Dir(p.Dir), Logger: r.opts.log()}
	st, err := local.Apply(ctx, p.Wiring)
	if err != nil {
		return nil, fmt.Errorf("instance %s: wiring: %w", p.Instance, err)
	}
	return st, nil
}

// waitGone waits (bounded) until the launcher pid has ended.
func waitGone(ctx context.Context, pid int, stateDir string) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for qemulaunch.LauncherRunning(pid, stateDir) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
	}
}

// Remove stops the launchers (and QEMU) whose state lies in dir, then
// removes the wiring: what wiring.json records, and every namespace and
// host link named after the instance.
func (r *localRuntime) Remove(ctx context.Context, dir string, grace time.Duration) error {
	name := filepath.Base(dir)
	var errs []error
	if err := qemulaunch.StopProcesses(ctx, dir, grace); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
	}
	local := &wiring.Local{StateRoot: filepath.Dir(dir), Logger: r.opts.log()}
	if err := local.Remove(ctx, name); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", name, err))
	}
	return errors.Join(errs...)
}

// FindLauncher returns the endpoint launcher to run: path when given (it
// must exist), else "endpoint" beside the running executable (where `make`
// puts both binaries), else "endpoint" on PATH. The error wraps
// ErrNoLauncher and says how to get one.
func FindLauncher(path string) (string, error) {
	if path != "" {
		if st, err := os.Stat(path); err != nil || st.IsDir() {
			return "", fmt.Errorf("%w: %s: not a file (build it: go build -o %s ./cmd/endpoint)", ErrNoLauncher, path, path)
		}
		return filepath.Abs(path)
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), LauncherName)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	if p, err := exec.LookPath(LauncherName); err == nil {
		return filepath.Abs(p)
	}
	return "", fmt.Errorf("%w: no %q beside this program or on PATH (`make build` puts it in bin/, or go build -o DIR/endpoint ./cmd/endpoint)", ErrNoLauncher, LauncherName)
}

// tail returns up to n bytes from the end of a file, starting at a line.
func tail(path string, n int64) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(st.Size()-n, 0)
	b, err := io.ReadAll(io.NewSectionReader(f, off, st.Size()-off))
	if err != nil {
		return ""
	}
	s := string(b)
	if off > 0 {
		if i := strings.IndexByte(s, '\n'); i >= 0 {
			s = s[i+1:]
		}
	}
	return s
}
