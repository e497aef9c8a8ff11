// Package containerdtest starts a private containerd for a test, by PID,
// with its own root, state, socket and configuration in a directory of the
// test, and stops it cleanly: tasks killed and deleted, containers and
// their snapshots removed, the daemon and the shims it started ended by
// their PIDs, mounts under the directory undone. Nothing is shared with a
// system containerd or with other tests running in parallel.
//
//	d := containerdtest.Start(t, containerdtest.Options{})
//	out, err := d.Ctr(ctx, "default", "images", "import", "image.tar")
//
// The CRI plugin is off unless [Options.CRI] is set; with it the daemon is a
// Kubernetes node's runtime (socket d.Address, namespace [K8sNamespace],
// restrict_oom_score_adj on, CNI directories and sandbox image as given).
// Tests skip, with the reason, unless root with containerd, ctr and runc
// installed (`make deps`).
package containerdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// Options configure [Start]. The zero value runs a daemon without CRI using
// the overlayfs snapshotter in a temporary directory of the test.
type Options struct {
	// Dir holds root/, state/, the socket, config.toml and the log;
	// default a new directory removed when the test ends.
	Dir string
	// Snapshotter is the default snapshotter (default overlayfs).
	Snapshotter string
	// CRI, when set, enables and configures the CRI plugin.
	CRI *CRI
	// ExtraConfig is TOML appended to the generated config.
	ExtraConfig string
	// StartTimeout bounds the wait for the socket to answer (default 30s).
	StartTimeout time.Duration
}

// Daemon is a running containerd.
type Daemon struct {
	Paths
	// Dir is the daemon's directory (see [PathsIn]).
	Dir string
	// Snapshotter is its default snapshotter.
	Snapshotter string

	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// PID is the daemon's process id (0 for a daemon of [At]).
func (d *Daemon) PID() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

// At is a handle on a daemon that runs with the layout of dir but was
// started elsewhere (by a harness that records its PID itself): [Daemon.Ctr],
// [Daemon.Leftovers] and [Daemon.RemoveAll] work; [Daemon.Stop] does not.
func At(dir, snapshotter string) *Daemon {
	if snapshotter == "" {
		snapshotter = "overlayfs"
	}
	return &Daemon{Paths: PathsIn(dir), Dir: dir, Snapshotter: snapshotter}
}

// Require skips the test unless it runs as root with containerd, ctr and
// runc on PATH.
func Require(tb testing.TB) {
	tb.Helper()
	ektest.RequireRoot(tb)
	ektest.RequireTool(tb, "containerd", "ctr", "runc")
}

// Start starts containerd and stops it (see [Daemon.Stop]) when the test
// ends. It skips when [Require] does.
func Start(tb testing.TB, opts Options) *Daemon {
	tb.Helper()
	Require(tb)
	dir := opts.Dir
	if dir == "" {
		var err error
		// Not tb.TempDir: its name (the test's) can make the socket path
		// longer than a unix socket allows (108 bytes).
		if dir, err = os.MkdirTemp("", "ektctrd-"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	d, err := start(dir, opts)
	if err != nil {
		tb.Fatalf("containerdtest: %v", err)
	}
	tb.Cleanup(func() {
		if err := d.Stop(); err != nil {
			tb.Errorf("containerdtest: %v", err)
		}
	})
	return d
}

func start(dir string, opts Options) (*Daemon, error) {
	p := PathsIn(dir)
	if len(p.Address) > 100 {
		return nil, fmt.Errorf("socket path %s is too long for a unix socket: use a shorter Options.Dir", p.Address)
	}
	for _, sub := range []string{p.Root, p.State} {
		if err := os.MkdirAll(sub, 0o711); err != nil {
			return nil, err
		}
	}
	if opts.CRI != nil && opts.CRI.CNIConfDir == "" {
		if err := os.MkdirAll(filepath.Join(dir, "cni", "net.d"), 0o755); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(p.Config, []byte(Config(p, opts.Snapshotter, opts.CRI, opts.ExtraConfig)), 0o644); err != nil {
		return nil, err
	}
	log, err := os.Create(p.Log)
	if err != nil {
		return nil, err
	}
	d := &Daemon{Paths: p, Dir: dir, Snapshotter: opts.Snapshotter, done: make(chan struct{}), log: log}
	if d.Snapshotter == "" {
		d.Snapshotter = "overlayfs"
	}
	d.cmd = exec.Command("containerd", "--config", p.Config)
	d.cmd.Stdout, d.cmd.Stderr = log, log
	// Its own process group: a ^C to the test reaches the test, which
	// then stops the daemon in order, instead of killing it mid-way.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		log.Close()
		return nil, fmt.Errorf("start containerd: %w", err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	timeout := opts.StartTimeout
	if timeout <= 0 {
		timeout = 30 * time.Second
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	for {
		if _, err := d.Ctr(ctx, "", "version"); err == nil {
			return d, nil
		}
		select {
		case <-d.done:
			d.log.Close()
			return nil, fmt.Errorf("containerd (pid %d) exited at start-up:\n%s", d.PID(), d.LogTail(40))
		case <-ctx.Done():
			d.Stop()
			return nil, fmt.Errorf("containerd (pid %d) did not answer on %s within %v:\n%s", d.PID(), p.Address, timeout, d.LogTail(40))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// LogTail returns the last n lines the daemon logged.
func (d *Daemon) LogTail(n int) string {
	raw, _ := os.ReadFile(d.Log)
	lines := strings.Split(strings.TrimRight(string(raw), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// CtrCmd returns `ctr --address SOCKET [--namespace NS] ARGS…` (namespace ""
// means ctr's default).
func (d *Daemon) CtrCmd(ctx context.Context, namespace string, args ...string) *exec.Cmd {
	all := []string{"--address", d.Address}
	if namespace != "" {
		all = append(all, "--namespace", namespace)
	}
	return exec.CommandContext(ctx, "ctr", append(all, args...)...)
}

// Ctr runs ctr against the daemon and returns its standard output; the
// error carries its standard error.
func (d *Daemon) Ctr(ctx context.Context, namespace string, args ...string) (string, error) {
	cmd := d.CtrCmd(ctx, namespace, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("ctr %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// list runs a ctr listing with -q and returns its lines.
func (d *Daemon) list(ctx context.Context, namespace string, args ...string) ([]string, error) {
	out, err := d.Ctr(ctx, namespace, append(args, "-q")...)
	if err != nil {
		return nil, err
	}
	return strings.Fields(out), nil
}

// Namespaces lists the daemon's containerd namespaces.
func (d *Daemon) Namespaces(ctx context.Context) ([]string, error) {
	return d.list(ctx, "", "namespaces", "ls")
}

// Leftovers describes what runs or is kept in the daemon and on the host
// for its containers: tasks, containers, active snapshots (those of
// containers, not the committed layers of images), mounts under the
// daemon's directory and shim processes. Empty means clean.
func (d *Daemon) Leftovers(ctx context.Context) []string {
	var out []string
	nss, err := d.Namespaces(ctx)
	if err != nil {
		out = append(out, err.Error())
	}
	for _, ns := range nss {
		for _, what := range [][]string{{"tasks", "ls"}, {"containers", "ls"}} {
			ids, err := d.list(ctx, ns, what...)
			if err != nil {
				// `ctr tasks ls -q` is not in every ctr: read the table.
				ids, err = d.tableIDs(ctx, ns, what...)
			}
			if err != nil {
				out = append(out, err.Error())
			}
			for _, id := range ids {
				out = append(out, fmt.Sprintf("%s %s/%s", strings.TrimSuffix(what[0], "s"), ns, id))
			}
		}
		snaps, err := d.Ctr(ctx, ns, "snapshots", "--snapshotter", d.Snapshotter, "ls")
		if err != nil {
			out = append(out, err.Error())
		}
		for _, l := range strings.Split(snaps, "\n")[1:] {
			if f := strings.Fields(l); len(f) == 3 && f[2] == "Active" {
				out = append(out, fmt.Sprintf("active snapshot %s/%s", ns, f[0]))
			}
		}
	}
	for _, m := range d.mounts() {
		out = append(out, "mount "+m)
	}
	for _, pid := range d.shims() {
		out = append(out, fmt.Sprintf("shim pid %d", pid))
	}
	return out
}

// tableIDs reads the first column of a ctr listing without -q.
func (d *Daemon) tableIDs(ctx context.Context, ns string, args ...string) ([]string, error) {
	out, err := d.Ctr(ctx, ns, args...)
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, l := range strings.Split(out, "\n")[1:] {
		if f := strings.Fields(l); len(f) > 0 {
			ids = append(ids, f[0])
		}
	}
	return ids, nil
}

// AssertClean fails the test if [Daemon.Leftovers] finds anything.
func (d *Daemon) AssertClean(tb testing.TB) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if left := d.Leftovers(ctx); len(left) > 0 {
		tb.Errorf("containerd left: %s", strings.Join(left, "; "))
	}
}

// mounts lists the mount points under the daemon's directory, deepest
// first.
func (d *Daemon) mounts() []string { return MountsUnder(d.Dir) }

// MountsUnder lists the mount points at or under dir, deepest first.
func MountsUnder(dir string) []string {
	raw, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var ms []string
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			ms = append(ms, f[4])
		}
	}
	sort.Sort(sort.Reverse(sort.StringSlice(ms)))
	return ms
}

// shims lists the PIDs of the shims this daemon started.
func (d *Daemon) shims() []int { return ShimPIDs(d.Address) }

// ShimPIDs lists the PIDs of the shims started by the containerd whose
// socket is address (their command line names it).
func ShimPIDs(address string) []int {
	// ProcessesMatching joins arguments with spaces, a trailing one too.
	pids, _ := ektest.ProcessesMatching("containerd-shim", "-address "+address+" ")
	return pids
}

// Stop kills and deletes every task and container left in any namespace,
// stops the daemon (SIGTERM, then SIGKILL after 15 s), kills the shims it
// started by PID and unmounts what is left under its directory. It returns
// what it had to clean, as an error, when the daemon did not stop by
// itself; leftovers a test should have removed are its business
// ([Daemon.AssertClean]). Stop is idempotent.
func (d *Daemon) Stop() error {
	if d.cmd == nil {
		return errors.New("containerdtest: Stop of a daemon started elsewhere (At)")
	}
	select {
	case <-d.done:
	default:
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		d.removeAll(ctx)
		cancel()
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(15 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
	}
	d.log.Close()
	var errs []error
	for _, pid := range d.shims() {
		syscall.Kill(pid, syscall.SIGKILL)
		errs = append(errs, fmt.Errorf("killed shim pid %d", pid))
	}
	for _, m := range d.mounts() {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			errs = append(errs, fmt.Errorf("unmount %s: %w", m, err))
		}
	}
	return errors.Join(errs...)
}

// RemoveAll kills and deletes the tasks and containers of every namespace
// (what a kubelet or a test left).
func (d *Daemon) RemoveAll(ctx context.Context) { d.removeAll(ctx) }

// removeAll kills and deletes the tasks and containers of every namespace.
func (d *Daemon) removeAll(ctx context.Context) {
	nss, _ := d.Namespaces(ctx)
	for _, ns := range nss {
		tasks, _ := d.tableIDs(ctx, ns, "tasks", "ls")
		for _, id := range tasks {
			d.Ctr(ctx, ns, "tasks", "kill", "--signal", "SIGKILL", id)
			for i := 0; i < 50; i++ {
				if _, err := d.Ctr(ctx, ns, "tasks", "delete", id); err == nil {
					break
				}
				time.Sleep(100 * time.Millisecond)
			}
		}
		ids, _ := d.list(ctx, ns, "containers", "ls")
		for _, id := range ids {
			d.Ctr(ctx, ns, "containers", "delete", id)
		}
	}
}
