package wiring

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"slices"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// DefaultStateRoot holds one state dir per lesson instance.
const DefaultStateRoot = "/run/endpointkit"

// DefaultPool is the management address pool; each instance (per host)
// takes the first /24 in it that no address, route or other instance uses.
const DefaultPool = "10.77.0.0/16"

// poolLock serialises the choice of management subnets between processes.
const poolLock = DefaultStateRoot + "/mgmt-pool.lock"

// Local is the embedded runtime: it wires a plan with namespaces, veth pairs,
// bridges and VXLAN devices on this machine. Its zero value is ready to use;
// fields change the defaults noted on each.
type Local struct {
	// StateRoot holds a state dir per instance; "" means DefaultStateRoot.
	StateRoot string
	// Pool is where management /24s come from; zero means DefaultPool.
	Pool netip.Prefix
	// MgmtSubnet, when valid, is used as this instance's management subnet
	// instead of a /24 from Pool.
	MgmtSubnet netip.Prefix
	// Host selects the endpoints placed on this host (Options.Placement);
	// "" is the default host.
	Host string
	// HostNetNS names a namespace that stands in for the host (tests,
	// nesting); "" is the caller's own namespace.
	HostNetNS string
	// AssignLinkAddresses puts the planned link addresses on the namespace
	// interfaces. Set it for plain-namespace endpoints; leave it off when a
	// VM owns the interface (its ethN is stitched to a TAP) and configures
	// the address itself. Off, IPv6 is also turned off on the endpoint's
	// interfaces, so the namespace's own stack sends nothing onto links
	// the guest owns.
	AssignLinkAddresses bool
	// SkipMgmtAddress leaves eth0 without address and default route (a
	// guest behind eth0 uses the management address instead).
	SkipMgmtAddress bool
	// Parallelism bounds concurrent namespace work; 0 means 4 × CPUs.
	Parallelism int
	// Logger receives progress at debug level; nil discards it.
	Logger *slog.Logger

	// afterNamespaces is a test hook run once the namespaces exist.
	afterNamespaces func()
}

// StateDir is the state dir of an instance.
func (l *Local) StateDir(instance string) string {
	root := l.StateRoot
	if root == "" {
		root = DefaultStateRoot
	}
	return filepath.Join(root, instance)
}

func (l *Local) log() *slog.Logger {
	if l.Logger == nil {
		return slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return l.Logger
}

func (l *Local) workers() int {
	if l.Parallelism > 0 {
		return l.Parallelism
	}
	return 4 * runtime.NumCPU()
}

// applier carries one Apply.
type applier struct {
	l      *Local
	p      *Plan
	log    *slog.Logger
	st     *State
	host   *nsEnv
	hostH  *netlink.Handle
	envs   map[string]*nsEnv // by namespace name: local endpoints and fabric
	fresh  map[string]bool   // namespaces this Apply created
	eps    []*EndpointPlan   // endpoints on this host
	segs   []*Segment        // segments on this host
	fabric string            // this host's fabric namespace
	fabH   *netlink.Handle   // in the fabric namespace, for bridges
	mgmtBr int               // index of the management bridge
}

// Apply builds the plan's endpoints and links that belong on this host (see
// Host) and returns the state, also written to StateDir(plan.Instance).
// It converges: applying again repairs what is missing and changes nothing
// that is right; a link added to the plan is created (a running instance's
// new link, in milliseconds), while an endpoint or link dropped from the
// plan stays until Teardown (or RemoveLink). On error the state file still records everything that may
// exist; call Teardown with the state dir to remove it. ctx bounds the whole
// call; cancelling it stops at the next step and leaves a partial apply.
func (l *Local) Apply(ctx context.Context, p *Plan) (*State, error) {
	if p == nil {
		return nil, fmt.Errorf("wiring: %w: nil plan", ErrInvalidOptions)
	}
	if os.Geteuid() != 0 {
		return nil, fmt.Errorf("wiring: instance %s: %w (namespaces, links and nftables need CAP_SYS_ADMIN and CAP_NET_ADMIN)", p.Instance, ErrNotPermitted)
	}
	a := &applier{l: l, p: p, log: l.log().With("instance", p.Instance), envs: map[string]*nsEnv{}, fresh: map[string]bool{}}
	defer a.close()
	a.fabric = p.FabricNamespace(l.Host)
	for i := range p.Endpoints {
		if p.Endpoints[i].Host == l.Host {
			a.eps = append(a.eps, &p.Endpoints[i])
		}
	}
	for i := range p.Segments {
		if p.Segments[i].Host == l.Host {
			a.segs = append(a.segs, &p.Segments[i])
		}
	}
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"open host namespace", a.openHost},
		{"load state", a.loadState},
		{"check names", a.checkCollisions},
		{"record", a.record},
		{"namespaces", a.createNamespaces},
		{"open namespaces", a.openNamespaces},
		{"management network", a.mgmtNetwork},
		{"links", a.createLinks},
		{"configure", a.configure},
		{"publish", a.publish},
		{"verify", a.verify},
	}
	for _, s := range steps {
		if err := ctx.Err(); err != nil {
			return a.st, fmt.Errorf("wiring: instance %s: %s: %w", p.Instance, s.name, err)
		}
		a.log.Debug("wiring step", "step", s.name)
		if err := s.fn(ctx); err != nil {
			return a.st, err
		}
	}
	a.st.Complete = true
	if err := a.st.save(); err != nil {
		return a.st, err
	}
	return a.st, nil
}

func (a *applier) close() {
	for _, e := range a.envs {
		e.close()
	}
	if a.hostH != nil {
		a.hostH.Close()
	}
	if a.fabH != nil {
		a.fabH.Close()
	}
	a.host.close()
}

// openHost opens the host namespace (or its stand-in) and lists its links.
func (a *applier) openHost(context.Context) error {
	env, err := openHostEnv(a.l.HostNetNS)
	if err != nil {
		return err
	}
	a.host = env
	if err := env.refresh(); err != nil {
		return fmt.Errorf("wiring: host namespace: %w", err)
	}
	a.hostH, err = netlink.NewHandleAt(env.fd, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("wiring: host namespace: netlink: %w", err)
	}
	return nil
}

// openHostEnv opens the namespace standing in for the host, or the calling
// thread's own.
func openHostEnv(name string) (*nsEnv, error) {
	if name != "" {
		env, err := openEnv(name, true, nsSettings{})
		if err != nil {
			return nil, fmt.Errorf("wiring: host namespace %q: %w", name, err)
		}
		return env, nil
	}
	return openEnvHere()
}

// loadState reads the instance's state file, or starts a new one.
func (a *applier) loadState(context.Context) error {
	dir := a.l.StateDir(a.p.Instance)
	st, err := LoadState(dir)
	switch {
	case err == nil:
		if st.Host != a.l.Host || st.HostNetNS != a.l.HostNetNS {
			return fmt.Errorf("wiring: instance %s: state in %s is for host %q (namespace %q); tear it down first", a.p.Instance, dir, st.Host, st.HostNetNS)
		}
	case errors.Is(err, os.ErrNotExist):
		st = &State{Version: stateVersion, Instance: a.p.Instance, Host: a.l.Host, HostNetNS: a.l.HostNetNS,
			HostLink: a.p.HostLink, Dir: dir}
	default:
		return err
	}
	st.Complete = false
	a.st = st
	return nil
}

// wanted lists the namespaces this host's part of the plan needs.
func (a *applier) wanted() []string {
	namespaces := []string{a.fabric}
	for _, e := range a.eps {
		namespaces = append(namespaces, e.Namespace)
	}
	return namespaces
}

// checkCollisions refuses names that exist and are not this instance's.
func (a *applier) checkCollisions(context.Context) error {
	for _, ns := range a.wanted() {
		if nsutil.Exists(ns) && !slices.Contains(a.st.Namespaces, ns) {
			return a.nsError(ns, fmt.Errorf("%w: namespace %s exists and is not recorded in %s: choose another instance name, or delete it (ip netns del %s)", ErrNameCollision, ns, a.st.Dir, ns))
		}
	}
	if _, ok := a.host.existing[a.p.HostLink]; ok && !a.st.HostLinkMade {
		return fmt.Errorf("wiring: instance %s: management uplink: %w: host link %s exists and is not recorded in %s: choose another instance name, or delete it (ip link del %s)", a.p.Instance, ErrNameCollision, a.p.HostLink, a.st.Dir, a.p.HostLink)
	}
	if len(a.p.Publish) > 0 && a.st.NFTable == "" {
		c, err := nftConn(a.host.fd)
		if err != nil {
			return err
		}
		if exists, err := nftTableExists(c, a.p.NFTable); err != nil {
			return err
		} else if exists {
			return fmt.Errorf("wiring: instance %s: publish: %w: nftables table ip %s exists and is not recorded in %s", a.p.Instance, ErrNameCollision, a.p.NFTable, a.st.Dir)
		}
	}
	return nil
}

// record writes every name before anything is created.
func (a *applier) record(context.Context) error {
	if len(a.p.Publish) > 0 {
		a.st.NFTable = a.p.NFTable
	}
	a.st.HostLinkMade = true
	return a.st.record(a.wanted())
}

// createNamespaces creates the missing namespaces in parallel.
func (a *applier) createNamespaces(ctx context.Context) error {
	namespaces := a.wanted()
	var todo []string
	for _, ns := range namespaces {
		if !nsutil.Exists(ns) {
			todo = append(todo, ns)
			a.fresh[ns] = true
		}
	}
	taken := make([]bool, len(todo))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(a.l.workers())
	for i, ns := range todo {
		g.Go(func() error {
			err := nsutil.Create(ns)
			if errors.Is(err, nsutil.ErrExists) {
				// Someone else took the name after checkCollisions.
				taken[i] = true
				err = fmt.Errorf("%w: %v", ErrNameCollision, err)
			}
			if err != nil {
				return a.nsError(ns, err)
			}
			return nil
		})
	}
	err := g.Wait()
	for i, ns := range todo {
		if taken[i] {
			_ = a.st.forget(ns) // not ours: Teardown must leave it
		}
	}
	a.log.Debug("namespaces created", "count", len(todo))
	if err == nil && a.l.afterNamespaces != nil {
		a.l.afterNamespaces()
	}
	return err
}

// openNamespaces opens every namespace's sockets in parallel.
func (a *applier) openNamespaces(ctx context.Context) error {
	namespaces := a.wanted()
	envs := make([]*nsEnv, len(namespaces))
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(a.l.workers())
	for i, ns := range namespaces {
		g.Go(func() error {
			set := nsSettings{noIPv6: ns == a.fabric}
			if e := a.endpointByNamespace(ns); e != nil {
				set = nsSettings{forwarding: e.EnableForwarding, pinForwarding: true, noIPv6: !a.l.AssignLinkAddresses}
			}
			env, err := openEnv(ns, a.fresh[ns], set)
			if errors.Is(err, nsutil.ErrNotExist) {
				err = fmt.Errorf("%w: %v; run Teardown, then Apply again", ErrNamespaceGone, err)
			}
			if err != nil {
				return a.nsError(ns, err)
			}
			envs[i] = env
			return nil
		})
	}
	err := g.Wait()
	for i, env := range envs {
		if env != nil {
			a.envs[namespaces[i]] = env
		}
	}
	return err
}

// verify fails if a namespace vanished while applying: links made in it
// through a still-open handle would be gone with it.
func (a *applier) verify(context.Context) error {
	for _, ns := range a.wanted() {
		if !nsutil.Exists(ns) {
			return a.nsError(ns, fmt.Errorf("%w: run Teardown, then Apply again", ErrNamespaceGone))
		}
	}
	return nil
}

// nsError wraps err for the endpoint (or fabric) owning namespace ns.
func (a *applier) nsError(ns string, err error) error {
	if e := a.endpointByNamespace(ns); e != nil {
		return &EndpointError{Endpoint: e.Name, Namespace: ns, Err: err}
	}
	return fmt.Errorf("wiring: instance %s: fabric namespace %s: %w", a.p.Instance, ns, err)
}

func (a *applier) endpointByNamespace(ns string) *EndpointPlan {
	for _, e := range a.eps {
		if e.Namespace == ns {
			return e
		}
	}
	return nil
}
