package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
)

// Live topology: links added to or removed from a running instance. The
// record (Instance.Links) is the difference from the lesson's connections;
// the instance's model is the lesson's with it applied (Instance.model), so
// everything that derives from the model — the wiring plan, the launches
// of a restarted endpoint, CheckLinks — knows the instance's links as they
// are.

// LinkChanges are the links of a running instance that differ from its
// lesson's connections.
type LinkChanges struct {
	// Added are the links added while it runs, in the order they were.
	Added []AddedLink `json:"added,omitempty"`
	// Removed are the lesson's links removed while it runs, each by one of
	// its ends as the lesson numbers it.
	Removed []LinkEnd `json:"removed,omitempty"`
}

// clone is a copy of c that shares no slice with it.
func (c LinkChanges) clone() LinkChanges {
	return LinkChanges{Added: slices.Clone(c.Added), Removed: slices.Clone(c.Removed)}
}

// AddedLink is a link added to a running instance (`lesson link add`).
type AddedLink struct {
	A      AddedEnd     `json:"a"`
	B      AddedEnd     `json:"b"`
	Subnet netip.Prefix `json:"subnet,omitzero"` // zero: no addresses
	MTU    int          `json:"mtu"`
}

// AddedEnd is one end of an AddedLink: the endpoint's container interface,
// the guest's name for the NIC behind it, its MAC and PCI address, and the
// address the guest gave it (when the link has a subnet).
type AddedEnd struct {
	Endpoint  string       `json:"endpoint"`
	Interface string       `json:"interface"`
	GuestName string       `json:"guestName"`
	MAC       string       `json:"mac"`
	PCI       string       `json:"pci"`
	Address   netip.Prefix `json:"address,omitzero"`
}

// LinkEnd names one end of a link: an endpoint's interface.
type LinkEnd struct {
	Endpoint  string `json:"endpoint"`
	Interface string `json:"interface"`
}

func (e LinkEnd) String() string { return e.Endpoint + ":" + e.Interface }

// String is "r1:eth3 ↔ r2:eth3 (10.99.0.0/24)".
func (l AddedLink) String() string {
	s := l.A.Endpoint + ":" + l.A.Interface + " ↔ " + l.B.Endpoint + ":" + l.B.Interface
	if l.Subnet.IsValid() {
		s += " (" + l.Subnet.String() + ")"
	}
	return s
}

// spec is the link as the endpoint model takes it.
func (l AddedLink) spec() endpoint.LinkSpec {
	end := func(e AddedEnd) endpoint.EndSpec {
		mac, _ := net.ParseMAC(e.MAC)
		return endpoint.EndSpec{Endpoint: e.Endpoint, Interface: e.Interface, MAC: mac, Address: e.Address}
	}
	return endpoint.LinkSpec{A: end(l.A), B: end(l.B), Subnet: l.Subnet, MTU: l.MTU}
}

// model reads the lesson again and derives the instance's endpoint model:
// the lesson's, less the lesson links it removed, plus the links it added.
func (i *Instance) model() (*lessonmeta.Lesson, *endpoint.Model, imageMetas, error) {
	l, m, images, err := loadModel(i.LessonDir, i.Name, i.imageDirs())
	if err != nil {
		return nil, nil, nil, err
	}
	for _, e := range i.Links.Removed {
		if _, err := m.RemoveLink(e.Endpoint, e.Interface); err != nil {
			return nil, nil, nil, fmt.Errorf("instance %s: the lesson link it removed at %s: %w (was the lesson edited?)", i.Name, e, err)
		}
	}
	for _, a := range i.Links.Added {
		if _, err := m.AddLink(a.spec(), images); err != nil {
			return nil, nil, nil, fmt.Errorf("instance %s: the link it added, %s: %w (was the lesson edited? remove it: lesson link del %s:%s)", i.Name, a, err, a.A.Endpoint, a.A.Interface)
		}
	}
	return l, m, images, nil
}

// AddLink cables a new link between endpoints a and b of the running
// instance and returns it (`lesson link add A B [--subnet CIDR]`). Each end
// gets the lowest ethN its endpoint does not use; with a subnet, the end
// listed first in the lesson gets its .2, the other .3 (the lesson's
// addressing rule).
//
// It checks everything it can before it changes anything — both
// endpoints exist; the runtime can change links (ErrLiveLinks); each
// end's machine type and NIC layout take a hot-plugged NIC there and each
// running guest has a hot-plug slot for it (ErrNoHotplug) — then the
// runtime cables the link and each end's launcher hot-plugs a TAP-backed
// NIC, stitched as at boot; over SSH each guest finds the NIC by its MAC,
// gives it the image's name, the address and brings it up. The link is
// recorded in the instance's state, so Status, a restart of an endpoint
// and Down know it. A failure at any step undoes the steps before it:
// nothing is left half-added.
func (i *Instance) AddLink(ctx context.Context, a, b string, subnet netip.Prefix) (AddedLink, error) {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	lc, err := i.linkChanger()
	if err != nil {
		return AddedLink{}, err
	}
	_, m, images, err := i.model()
	if err != nil {
		return AddedLink{}, err
	}
	s, err := m.NewLink(a, b, subnet, i.Name)
	if err != nil {
		return AddedLink{}, i.linkError(err)
	}
	before, err := wiring.NewPlan(m, wiring.Options{Instance: i.Name})
	if err != nil {
		return AddedLink{}, fmt.Errorf("instance %s: %w", i.Name, err)
	}
	link, err := m.AddLink(s, images)
	if err != nil {
		return AddedLink{}, i.linkError(err)
	}
	plan, err := wiring.NewPlan(m, wiring.Options{Instance: i.Name})
	if err != nil {
		return AddedLink{}, fmt.Errorf("instance %s: link %s: %w", i.Name, describeSpec(s), err)
	}
	rep.report(StepLink, "", "adding "+describeSpec(s), nil)
	var ends [2]*linkEnd
	for j, es := range []endpoint.EndSpec{s.A, s.B} {
		if ends[j], err = i.newLinkEnd(ctx, m, images, es); err != nil {
			return AddedLink{}, err
		}
	}
	// The guests: one SSH connection each, to check the slot now and to
	// bring the NIC up after.
	if err := both(ends, func(e *linkEnd) error { return i.guestCanTake(ctx, e) }); err != nil {
		closeEnds(ends)
		return AddedLink{}, err
	}
	defer closeEnds(ends)
	p := i.linkPlacement(plan, rep)
	nics, err := lc.AddLink(ctx, p, link.Index, [2]LinkNIC{ends[0].nic(), ends[1].nic()})
	if err != nil {
		return AddedLink{}, fmt.Errorf("instance %s: link %s: %w", i.Name, describeSpec(s), err)
	}
	err = both(ends, func(e *linkEnd) error { return e.bringUp(ctx) })
	if err != nil {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		if rerr := lc.RemoveLink(cctx, i.linkPlacement(before, rep), plan.Links[link.Index], [2]LinkNIC{ends[0].nic(), ends[1].nic()}); rerr != nil {
			err = errors.Join(err, fmt.Errorf("undo: %w", rerr))
		}
		return AddedLink{}, fmt.Errorf("instance %s: link %s: %w", i.Name, describeSpec(s), err)
	}
	added := AddedLink{Subnet: s.Subnet, MTU: s.MTU}
	for j, e := range ends {
		ae := AddedEnd{Endpoint: e.spec.Endpoint, Interface: e.spec.Interface, GuestName: e.guestName, MAC: e.spec.MAC.String(),
			PCI: nics[j].PCI, Address: e.spec.Address}
		if j == 0 {
			added.A = ae
		} else {
			added.B = ae
		}
	}
	if err := i.changeLinks(func(c *LinkChanges) { c.Added = append(c.Added, added) }); err != nil {
		return AddedLink{}, err
	}
	rep.report(StepLink, "", "added "+added.String(), nil)
	return added, nil
}

// RemoveLink removes the link whose end is interface iface of endpoint ep
// from the running instance — a lesson link or an added one — and returns
// its two ends (`lesson link del EP:IFACE`): each end's launcher unplugs
// the NIC behind the interface (the guest releases it), then the runtime
// removes the link, and the instance's state records it gone. The error
// wraps ErrNoEndpoint, ErrNotLink (the interface is not a link: naming the
// endpoint's links), ErrLiveLinks or ErrNoHotplug (a guest did not release
// its NIC; the link stays and the removal can be asked again).
func (i *Instance) RemoveLink(ctx context.Context, ep, iface string) ([2]LinkEnd, error) {
	rep := reporter{fn: i.opts.Progress, start: time.Now()}
	lc, err := i.linkChanger()
	if err != nil {
		return [2]LinkEnd{}, err
	}
	_, m, _, err := i.model()
	if err != nil {
		return [2]LinkEnd{}, err
	}
	before, err := wiring.NewPlan(m, wiring.Options{Instance: i.Name})
	if err != nil {
		return [2]LinkEnd{}, fmt.Errorf("instance %s: %w", i.Name, err)
	}
	link, err := m.RemoveLink(ep, iface)
	if err != nil {
		return [2]LinkEnd{}, i.linkError(err)
	}
	ends := [2]LinkEnd{{link.A.Endpoint, link.A.Interface}, {link.B.Endpoint, link.B.Interface}}
	var nics [2]LinkNIC
	for j, e := range ends {
		rec, ok := i.Endpoint(e.Endpoint)
		if !ok {
			return ends, i.noEndpoint(e.Endpoint)
		}
		nics[j] = LinkNIC{Endpoint: rec, NIC: qemulaunch.Interface{Name: e.Interface}}
	}
	rep.report(StepLink, "", fmt.Sprintf("removing %s ↔ %s", ends[0], ends[1]), nil)
	after, err := wiring.NewPlan(m, wiring.Options{Instance: i.Name})
	if err != nil {
		return ends, fmt.Errorf("instance %s: %w", i.Name, err)
	}
	// The record first: the instance's healer repairs what the record's
	// links lack, and must not cable the link again while it goes.
	var was LinkChanges
	err = i.changeLinks(func(c *LinkChanges) {
		was = c.clone()
		n := len(c.Added)
		c.Added = slices.DeleteFunc(c.Added, func(a AddedLink) bool {
			return a.A.Endpoint == ends[0].Endpoint && a.A.Interface == ends[0].Interface
		})
		if len(c.Added) == n { // a lesson link
			c.Removed = append(c.Removed, ends[0])
		}
	})
	if err != nil {
		return ends, err
	}
	if err := lc.RemoveLink(ctx, i.linkPlacement(after, rep), before.Links[link.Index], nics); err != nil {
		if rerr := i.changeLinks(func(c *LinkChanges) { *c = was }); rerr != nil {
			err = errors.Join(err, fmt.Errorf("restoring the record: %w", rerr))
		}
		return ends, fmt.Errorf("instance %s: link %s ↔ %s: %w (it stays; ask again to retry)", i.Name, ends[0], ends[1], err)
	}
	rep.report(StepLink, "", fmt.Sprintf("removed %s ↔ %s", ends[0], ends[1]), nil)
	return ends, nil
}

// linkChanger is the runtime's LinkChanger, or the ErrLiveLinks error.
func (i *Instance) linkChanger() (LinkChanger, error) {
	lc, ok := i.runtime().(LinkChanger)
	if !ok {
		return nil, fmt.Errorf("instance %s: %w (runtime %T); tear it down and bring it up with the links in the lesson", i.Name, ErrLiveLinks, i.runtime())
	}
	return lc, nil
}

// linkError names the instance in a model error (unknown endpoint, not a
// link, a link that cannot be added).
func (i *Instance) linkError(err error) error {
	return fmt.Errorf("instance %s: %w", i.Name, err)
}

// linkPlacement is the Placement a LinkChanger gets: the instance with the
// wiring plan given.
func (i *Instance) linkPlacement(plan *wiring.Plan, rep reporter) *Placement {
	return &Placement{Instance: i.Name, Dir: i.Dir, Accel: i.Accel, Wiring: plan, Record: i.update,
		Report: func(step Step, ep, msg string) { rep.report(step, ep, msg, nil) }}
}

// changeLinks changes the record's link changes and saves it.
func (i *Instance) changeLinks(f func(*LinkChanges)) error {
	return i.mutate(func(d *Instance) { f(&d.Links) })
}

// linkEnd is one end of a link being added: where its NIC goes, the SSH
// connection to its guest.
type linkEnd struct {
	spec      endpoint.EndSpec
	rec       RunningEndpoint
	hot       qemulaunch.NIC // where the NIC goes (HotplugNIC)
	mtu       int
	guestName string // the image's name for it; then the guest's
	target    configure.Target
	ssh       *configure.SSHClient
}

// newLinkEnd finds the endpoint's record and image and refuses a machine
// that cannot take the NIC.
func (i *Instance) newLinkEnd(ctx context.Context, m *endpoint.Model, images imageMetas, s endpoint.EndSpec) (*linkEnd, error) {
	rec, ok := i.Endpoint(s.Endpoint)
	if !ok {
		return nil, i.noEndpoint(s.Endpoint)
	}
	ep := m.Endpoint(s.Endpoint)
	im := images[rec.Image]
	if im == nil {
		return nil, fmt.Errorf("endpoint %s: image %s not loaded", s.Endpoint, rec.Image)
	}
	hot, err := qemulaunch.FromEndpoint(*ep, im).HotplugNIC(s.Interface)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", s.Endpoint, err)
	}
	e := &linkEnd{spec: s, rec: rec, hot: hot, mtu: ep.Interface(s.Interface).MTU, guestName: hot.GuestName}
	e.target, err = i.learnerTarget(ctx, *ep, rec, im)
	return e, err
}

// nic is what the end's launcher is asked for.
func (e *linkEnd) nic() LinkNIC {
	return LinkNIC{Endpoint: e.rec, NIC: qemulaunch.Interface{Name: e.spec.Interface, TAP: e.hot.TAP, MAC: e.spec.MAC, MTU: e.mtu}}
}

// guestCanTake logs in to the end's guest and checks that its kernel has a
// hot-plug slot where the NIC goes (/sys/bus/pci/slots/N: ACPI PCI
// hot-plug manages it).
func (i *Instance) guestCanTake(ctx context.Context, e *linkEnd) error {
	c, err := configure.DialSSH(ctx, e.target, configure.DialOptions{})
	if err != nil {
		return fmt.Errorf("endpoint %s: log in to check its guest can take a NIC: %w", e.rec.Name, err)
	}
	e.ssh = c
	slot := strconv.Itoa(e.hot.Slot)
	if _, err := c.Run(ctx, "test -d /sys/bus/pci/slots/"+slot); err != nil {
		var ee *configure.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("endpoint %s: %w: its guest has no hot-plug slot %s (/sys/bus/pci/slots/%s) for %s at %s: the guest kernel runs without ACPI PCI hot-plug (acpiphp; pci=noacpi turns it off); add the link to the lesson instead",
				e.rec.Name, ErrNoHotplug, slot, slot, e.spec.Interface, e.hot.PCI)
		}
		return fmt.Errorf("endpoint %s: %w", e.rec.Name, err)
	}
	return nil
}

// bringUp waits in the guest for the NIC with the end's MAC, names it as
// the image does, gives it the planned address and brings it up; the
// guest's name for it ends in guestName.
func (e *linkEnd) bringUp(ctx context.Context) error {
	res, err := e.ssh.Run(ctx, guestUpScript(e.spec.MAC.String(), e.guestName, e.spec.Address))
	if err != nil {
		return fmt.Errorf("endpoint %s: bring up the NIC behind %s in the guest: %w", e.rec.Name, e.spec.Interface, err)
	}
	if name := strings.TrimSpace(res.Output); name != "" {
		e.guestName = name
	}
	return nil
}

// restoreAddedLinks brings up, in the guest of an endpoint that booted
// again, the NICs of the links added to the running instance (the stage's
// configuration knows only the lesson's links): each found by its MAC,
// named and addressed as when the link was added.
func (i *Instance) restoreAddedLinks(ctx context.Context, ep endpoint.Endpoint, rec RunningEndpoint, im *vmimage.Image) error {
	var ends []AddedEnd
	for _, l := range i.Links.Added {
		for _, e := range []AddedEnd{l.A, l.B} {
			if e.Endpoint == ep.Name {
				ends = append(ends, e)
			}
		}
	}
	if len(ends) == 0 {
		return nil
	}
	t, err := i.learnerTarget(ctx, ep, rec, im)
	if err != nil {
		return err
	}
	c, err := configure.DialSSH(ctx, t, configure.DialOptions{})
	if err != nil {
		return fmt.Errorf("endpoint %s: log in to bring up its added links: %w", ep.Name, err)
	}
	defer c.Close()
	var errs []error
	for _, e := range ends {
		if _, err := c.Run(ctx, guestUpScript(e.MAC, e.GuestName, e.Address)); err != nil {
			errs = append(errs, fmt.Errorf("endpoint %s: bring up the NIC behind %s (an added link) in the guest: %w", ep.Name, e.Interface, err))
		}
	}
	return errors.Join(errs...)
}

// guestUpWait bounds the wait in the guest for an added NIC to appear
// (the kernel's hot-plug handler probes it within a second, also under
// TCG).
const guestUpWait = 30 * time.Second

// guestUpScript is the POSIX shell (busybox and Debian alike) that finds
// the NIC with mac, renames it to name when the kernel named it otherwise
// and name is free, flushes and sets addr (when valid), brings it up and
// prints its name.
func guestUpScript(mac, name string, addr netip.Prefix) string {
	tries := int(guestUpWait / (100 * time.Millisecond))
	s := `S=; [ "$(id -u)" = 0 ] || S="sudo -n"; n=0; dev=
while :; do
  for d in /sys/class/net/*; do [ "$(cat "$d/address" 2>/dev/null)" = ` + mac + ` ] && dev=${d##*/}; done
  [ -n "$dev" ] && break
  n=$((n+1)); [ $n -ge ` + strconv.Itoa(tries) + ` ] && { echo "no NIC with MAC ` + mac + ` appeared in ` + guestUpWait.String() + `" >&2; exit 3; }
  sleep 0.1 2>/dev/null || sleep 1
done
if [ "$dev" != ` + name + ` ] && [ ! -e /sys/class/net/` + name + ` ]; then $S ip link set dev "$dev" down; $S ip link set dev "$dev" name ` + name + ` && dev=` + name + `; fi
`
	if addr.IsValid() {
		s += `$S ip addr flush dev "$dev"; $S ip addr add ` + addr.String() + ` dev "$dev"
`
	}
	return s + `$S ip link set dev "$dev" up && echo "$dev"`
}

// learnerTarget is how the learner's SSH reaches the endpoint (see
// target), with the image's SSH credentials.
func (i *Instance) learnerTarget(ctx context.Context, ep endpoint.Endpoint, rec RunningEndpoint, im *vmimage.Image) (configure.Target, error) {
	t, err := i.target(ctx, configTarget{ep, rec, im})
	if err != nil {
		return configure.Target{}, err
	}
	t.User, t.Password = ep.Credentials.SSHUser, configure.Secret(ep.Credentials.SSHPassword)
	return t, nil
}

// both runs f on the two ends in parallel and joins the errors.
func both(ends [2]*linkEnd, f func(*linkEnd) error) error {
	var errs [2]error
	var wg sync.WaitGroup
	for j, e := range ends {
		wg.Go(func() { errs[j] = f(e) })
	}
	wg.Wait()
	return errors.Join(errs[0], errs[1])
}

func closeEnds(ends [2]*linkEnd) {
	for _, e := range ends {
		if e != nil && e.ssh != nil {
			e.ssh.Close()
		}
	}
}

// describeSpec is "r1:eth3 ↔ r2:eth3 (10.99.0.0/24)".
func describeSpec(s endpoint.LinkSpec) string {
	return AddedLink{A: AddedEnd{Endpoint: s.A.Endpoint, Interface: s.A.Interface},
		B: AddedEnd{Endpoint: s.B.Endpoint, Interface: s.B.Interface}, Subnet: s.Subnet}.String()
}

// Topology is the running instance's endpoint model: its lesson's, read
// again, with the links added to it and without the lesson links removed
// from it — the links it has now.
func (i *Instance) Topology() (*endpoint.Model, error) {
	_, m, _, err := i.model()
	return m, err
}
