package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// ErrInterfaceTimeout is returned when the expected container interfaces
// (or the management address) did not appear in time.
var ErrInterfaceTimeout = errors.New("qemulaunch: container interfaces missing")

// want is what interface discovery waits for.
type want struct {
	mgmt     string   // management interface needing an IPv4 address; "" none
	names    []string // data interfaces by name
	count    int      // with names empty: eth1…ethCount; 0: whatever ethN exist
	explicit bool     // names were given (count ignored)
}

// found is the discovery result.
type found struct {
	mgmtAddr netip.Addr
	data     []netlink.Link // in NIC order
}

// discover waits, at most timeout, until every wanted interface exists (and
// the management interface has an IPv4 address). It is event-driven: it
// re-checks on each netlink link or address notification.
func (e *netEnv) discover(ctx context.Context, w want, timeout time.Duration) (*found, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	links := make(chan netlink.LinkUpdate, 64)
	addrs := make(chan netlink.AddrUpdate, 64)
	done := make(chan struct{})
	defer close(done)
	ns := e.ns
	if err := netlink.LinkSubscribeWithOptions(links, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		return nil, fmt.Errorf("watch links: %w", err)
	}
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: &ns}); err != nil {
		return nil, fmt.Errorf("watch addresses: %w", err)
	}
	for {
		f, missing, err := e.check(w)
		if err != nil {
			return nil, err
		}
		if missing == "" {
			return f, nil
		}
		select {
		case <-links:
		case <-addrs:
		case <-ctx.Done():
			have, _ := e.linkNames()
			return nil, fmt.Errorf("%w: waited %v for %s (present: %s); check the endpoint's links or lower the expected interface count",
				ErrInterfaceTimeout, timeout, missing, strings.Join(have, ", "))
		}
	}
}

// check evaluates w against the current links. missing describes what is
// absent ("" when everything is there).
func (e *netEnv) check(w want) (*found, string, error) {
	all, err := e.linkList()
	if err != nil {
		return nil, "", fmt.Errorf("list links: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range all {
		byName[l.Attrs().Name] = l
	}
	f := &found{}
	if w.mgmt != "" {
		l, ok := byName[w.mgmt]
		if !ok {
			return nil, "management interface " + w.mgmt, nil
		}
		addrs, err := e.h.AddrList(l, unix.AF_INET)
		if err != nil {
			return nil, "", fmt.Errorf("%s: list addresses: %w", w.mgmt, err)
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP.To4()); ok && a.Scope == unix.RT_SCOPE_UNIVERSE {
				f.mgmtAddr = ip
				break
			}
		}
		if !f.mgmtAddr.IsValid() {
			return nil, "an IPv4 address on " + w.mgmt, nil
		}
	}
	names := w.names
	if !w.explicit {
		names = nil
		if w.count > 0 {
			for i := 1; i <= w.count; i++ {
				names = append(names, "eth"+strconv.Itoa(i))
			}
		} else {
			names = dataLinkNames(byName, w.mgmt)
		}
	}
	var missing []string
	for _, n := range names {
		l, ok := byName[n]
		if !ok {
			missing = append(missing, n)
			continue
		}
		f.data = append(f.data, l)
	}
	if len(missing) > 0 {
		return nil, "data interface(s) " + strings.Join(missing, ", "), nil
	}
	return f, "", nil
}

// dataLinkNames returns the ethN (N ≥ 1) links present, in N order.
func dataLinkNames(byName map[string]netlink.Link, mgmt string) []string {
	type nl struct {
		n    int
		name string
	}
	var ls []nl
	for name := range byName {
		if name == mgmt || !strings.HasPrefix(name, "eth") {
			continue
		}
		n, err := strconv.Atoi(name[3:])
		if err != nil || n < 1 {
			continue
		}
		ls = append(ls, nl{n, name})
	}
	sort.Slice(ls, func(i, j int) bool { return ls[i].n < ls[j].n })
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.name
	}
	return out
}

func (e *netEnv) linkNames() ([]string, error) {
	all, err := e.linkList()
	var out []string
	for _, l := range all {
		out = append(out, l.Attrs().Name)
	}
	sort.Strings(out)
	return out, err
}
