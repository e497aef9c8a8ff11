package wiring

import "errors"

// vethLink is a point-to-point link between two endpoint namespaces on this
// host: one veth pair, ends named as planned (ethI in a, ethJ in b).
type vethLink struct {
	l *LinkPlan
}

func (v *vethLink) prepare(a *applier, b *batch) error {
	l := v.l
	envA, idxA := a.endEnv(l.A)
	envB, idxB := a.endEnv(l.B)
	if envA.has(l.A.Interface) && envB.has(l.B.Interface) {
		return nil // configure repairs state, MTU and addresses
	}
	// One end without the other is half of a broken pair: start again.
	if err := errors.Join(envA.del(l.A.Interface), envB.del(l.B.Interface)); err != nil {
		return linkError(l, "remove stray end")(err)
	}
	ea := linkSpec{name: l.A.Interface, index: envA.planned(idxA), mtu: l.MTU, netns: int(envA.fd)}
	eb := linkSpec{name: l.B.Interface, index: envB.planned(idxB), mtu: l.MTU, netns: int(envB.fd)}
	if ea.index == 0 {
		// The peer's index is only honoured with the first end's.
		ea, eb = eb, ea
	}
	b.add(linkError(l, "create veth pair"), newVethReq(ea, eb))
	return nil
}
