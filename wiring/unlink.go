package wiring

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// A link added to a running instance's plan is made by Apply, which
// converges: it creates what the plan has and the namespaces lack. A link
// dropped from the plan is removed by RemoveLink (Apply leaves what the
// plan no longer has).

// RemoveLink removes one link of the instance from this host: the
// interfaces of its ends that lie in this host's endpoint namespaces (a
// veth pair goes with either end; a bridge segment's port and a VXLAN
// device with theirs) and their names from the state file, so that the
// wiring state lists only the interfaces the instance has. link is the
// link as it was planned; the instance's plan without it is what Apply is
// given from now on. An interface already gone is not an error, so a
// removal can be repeated.
func (l *Local) RemoveLink(ctx context.Context, instance string, link LinkPlan) error {
	st, err := LoadState(l.StateDir(instance))
	if err != nil {
		return err
	}
	var errs []error
	for _, e := range []End{link.A, link.B} {
		if err := ctx.Err(); err != nil {
			return err
		}
		es, ok := st.Endpoint(e.Endpoint)
		if !ok {
			continue // on another host
		}
		if err := deleteInterface(es.Namespace, e.Interface); err != nil {
			errs = append(errs, linkError(&link, e.Endpoint+"."+e.Interface)(err))
			continue
		}
		for k := range st.Endpoints {
			if st.Endpoints[k].Name == e.Endpoint {
				st.Endpoints[k].Interfaces = slices.DeleteFunc(st.Endpoints[k].Interfaces, func(n string) bool { return n == e.Interface })
			}
		}
	}
	if err := st.save(); err != nil {
		errs = append(errs, err)
	}
	l.log().Debug("link removed", "instance", instance, "link", link.desc(), "errors", len(errs))
	return errors.Join(errs...)
}

// deleteInterface deletes the interface of that name in namespace ns, if
// it is there.
func deleteInterface(ns, name string) error {
	h, err := nsutil.Handle(ns)
	if err != nil {
		return err
	}
	defer h.Close()
	lk, err := h.LinkByName(name)
	var notFound netlink.LinkNotFoundError
	if errors.As(err, &notFound) || errors.Is(err, unix.ENODEV) {
		return nil
	}
	if err == nil {
		err = h.LinkDel(lk)
	}
	if err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete %s in %s: %w", name, ns, err)
	}
	return nil
}
