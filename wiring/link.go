package wiring

import (
	"context"
	"errors"
	"fmt"

	"golang.org/x/sync/errgroup"
	"golang.org/x/sys/unix"
)

// link is one variant of data-plane connection (link_veth.go,
// link_bridge.go, link_vxlan.go). prepare makes or queues what is missing:
// veth pairs go on the host namespace's batch, created with both ends placed
// straight into their namespaces; bridges and VXLAN devices, which are few,
// are made at once. Nothing a link makes survives its namespaces, so links
// need no teardown of their own.
type link interface {
	prepare(a *applier, b *batch) error
}

var (
	_ link = (*vethLink)(nil)
	_ link = (*bridgeSegment)(nil)
	_ link = (*vxlanLink)(nil)
)

// links lists the links with an end on this host.
func (a *applier) links() []link {
	var out []link
	for i := range a.p.Links {
		l := &a.p.Links[i]
		switch l.Kind {
		case KindVeth:
			if a.isLocal(l.A.Endpoint) {
				out = append(out, &vethLink{l: l})
			}
		case KindVXLAN:
			if a.isLocal(l.A.Endpoint) {
				out = append(out, &vxlanLink{l: l, end: l.A, local: l.HostA, remote: l.HostB})
			}
			if a.isLocal(l.B.Endpoint) {
				out = append(out, &vxlanLink{l: l, end: l.B, local: l.HostB, remote: l.HostA})
			}
		}
	}
	for _, s := range a.segs {
		out = append(out, &bridgeSegment{s: s})
	}
	return out
}

func (a *applier) isLocal(endpoint string) bool {
	ep := a.p.endpoint(endpoint)
	return ep != nil && ep.Host == a.l.Host
}

// endEnv returns the namespace of a link end and the index planned for the
// interface there.
func (a *applier) endEnv(e End) (*nsEnv, int) {
	ep := a.p.endpoint(e.Endpoint)
	env := a.envs[ep.Namespace]
	for k, ifc := range ep.Interfaces {
		if ifc.Name == e.Interface {
			return env, firstIfIndex + k
		}
	}
	return env, 0
}

// linkError wraps err as a failure of link l.
func linkError(l *LinkPlan, what string) func(error) error {
	return func(err error) error {
		if errors.Is(err, unix.EEXIST) {
			err = fmt.Errorf("%w: %v", ErrNameCollision, err)
		}
		return &LinkError{Link: l.Index, Desc: l.desc(), Err: fmt.Errorf("%s: %w", what, err)}
	}
}

// createLinks makes every management and data link that is missing.
func (a *applier) createLinks(context.Context) error {
	var b batch
	a.mgmtLinks(&b)
	for _, lk := range a.links() {
		if err := lk.prepare(a, &b); err != nil {
			return err
		}
	}
	if err := a.host.rt.run(&b); err != nil {
		return err
	}
	a.log.Debug("links created", "requests", b.len())
	// Learn the indexes the kernel chose in namespaces that existed before.
	for _, env := range a.envs {
		if env.existing != nil || env.mustRefresh {
			if err := env.refresh(); err != nil {
				return a.nsError(env.name, err)
			}
		}
	}
	return nil
}

// configure brings links up, sets addresses and routes and turns off TX
// checksum offload, one batch per namespace, namespaces in parallel.
func (a *applier) configure(ctx context.Context) error {
	g, _ := errgroup.WithContext(ctx)
	g.SetLimit(a.l.workers())
	for _, e := range a.eps {
		g.Go(func() error { return a.configureEndpoint(e) })
	}
	g.Go(a.configureFabric)
	if err := txChecksum(a.host.ioctl, a.p.HostLink, false); err != nil {
		return fmt.Errorf("wiring: instance %s: management uplink: %w", a.p.Instance, err)
	}
	return g.Wait()
}

func (a *applier) configureEndpoint(e *EndpointPlan) error {
	env := a.envs[e.Namespace]
	wrap := func(what string) func(error) error {
		return func(err error) error {
			return &EndpointError{Endpoint: e.Name, Namespace: e.Namespace, Err: fmt.Errorf("%s: %w", what, err)}
		}
	}
	var b batch
	b.add(wrap("lo up"), setLinkReq(1, 0))
	eth0, err := env.index("eth0", mgmtIfIndex)
	if err != nil {
		return wrap("eth0")(err)
	}
	// Peer ends of new veth pairs come up here: the kernel cannot open a
	// veth's peer while creating the pair (ENOTCONN).
	b.add(wrap("eth0 up"), setLinkReq(eth0, 0))
	if !a.l.SkipMgmtAddress {
		addr := mgmtAddr(a.st.MgmtSubnet, e.Pos)
		b.add(wrap("eth0 address "+addr.String()), addrReq(eth0, addr))
		b.add(wrap("default route via "+a.st.Gateway.String()), defaultRouteReq(eth0, a.st.Gateway))
	}
	for k, ifc := range e.Interfaces {
		idx, err := env.index(ifc.Name, firstIfIndex+k)
		if err != nil {
			return wrap(ifc.Name)(err)
		}
		l := &a.p.Links[ifc.Link]
		b.add(linkError(l, e.Name+"."+ifc.Name+" up"), setLinkReq(idx, ifc.MTU))
		if a.l.AssignLinkAddresses && ifc.Address.IsValid() {
			b.add(linkError(l, e.Name+"."+ifc.Name+" address "+ifc.Address.String()), addrReq(idx, ifc.Address))
		}
	}
	if err := env.rt.run(&b); err != nil {
		return err
	}
	if err := txChecksum(env.ioctl, "eth0", false); err != nil {
		return wrap("eth0")(err)
	}
	for _, ifc := range e.Interfaces {
		if err := txChecksum(env.ioctl, ifc.Name, false); err != nil {
			return linkError(&a.p.Links[ifc.Link], e.Name+"."+ifc.Name)(err)
		}
	}
	return nil
}
