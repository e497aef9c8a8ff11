package wiring

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/endpointkit/endpointkit/internal/ethtool"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// nsEnv is what Apply holds open for one namespace: its fd (to place links
// in it), a route socket and an ioctl socket that live inside it. Sockets
// keep their namespace, so after the one thread switch in openEnv every call
// runs on ordinary goroutines.
type nsEnv struct {
	name  string
	fd    netns.NsHandle
	rt    *rtnl
	ioctl int
	// existing is nil for a namespace this Apply created (it holds only lo);
	// otherwise the links found in it, by name.
	existing map[string]netlink.Link
	// mustRefresh: a link was created here with an index the kernel chose,
	// so indexes must be looked up after creation.
	mustRefresh bool
}

// nsSettings are sysctls openEnv sets inside a namespace.
type nsSettings struct {
	forwarding bool // IPv4 forwarding on
	// pinForwarding writes forwarding's value even when it is off: a new
	// namespace copies the host's IPv4 sysctls (net.core.
	// devconf_inherit_init_net 0), so on a host that forwards (a
	// Kubernetes node, Docker) an endpoint would forward too.
	pinForwarding bool
	// noIPv6 turns IPv6 off for interfaces created afterwards, so the
	// namespace's own stack sends nothing (router solicitations, duplicate
	// address detection, MLD) onto links a guest owns.
	noIPv6 bool
}

// openEnv opens the sockets of namespace name. fresh says Apply just created
// it.
func openEnv(name string, fresh bool, set nsSettings) (*nsEnv, error) {
	fd, err := nsutil.Open(name)
	if err != nil {
		return nil, err
	}
	env := &nsEnv{name: name, fd: fd, ioctl: -1}
	err = nsutil.DoHandle(fd, func() error {
		var err error
		if env.rt, err = openRTNL(); err != nil {
			return err
		}
		if env.ioctl, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0); err != nil {
			return fmt.Errorf("ioctl socket: %w", err)
		}
		// /proc/sys/net is resolved against the opening thread's namespace.
		if set.forwarding || set.pinForwarding {
			v := map[bool]string{true: "1\n", false: "0\n"}[set.forwarding]
			if err := os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(v), 0o644); err != nil {
				return fmt.Errorf("set forwarding to %s: %w", strings.TrimSpace(v), err)
			}
		}
		if set.noIPv6 {
			if err := os.WriteFile("/proc/sys/net/ipv6/conf/default/disable_ipv6", []byte("1\n"), 0o644); err != nil {
				return fmt.Errorf("disable IPv6: %w", err)
			}
		}
		return nil
	})
	if err == nil && !fresh {
		err = env.refresh()
	}
	if err != nil {
		env.close()
		return nil, fmt.Errorf("netns %s: %w", name, err)
	}
	return env, nil
}

// refresh lists the links in the namespace.
func (e *nsEnv) refresh() error {
	h, err := netlink.NewHandleAt(e.fd, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink handle: %w", err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return fmt.Errorf("list links: %w", err)
	}
	e.existing = map[string]netlink.Link{}
	for _, l := range links {
		e.existing[l.Attrs().Name] = l
	}
	return nil
}

func (e *nsEnv) close() {
	if e == nil {
		return
	}
	e.rt.close()
	if e.ioctl >= 0 {
		unix.Close(e.ioctl)
	}
	e.fd.Close()
}

// txChecksum turns TX checksum offload of a link on or off. With it off, a
// veth computes checksums of locally generated packets before handing them
// on, so the frames stay correct when a tc mirred redirect moves them into a
// TAP whose reader (QEMU) does not finish partial checksums. The kernel then
// also drops TSO on that link (it depends on checksum offload), so large
// sends are segmented in software first.
func txChecksum(sock int, ifname string, on bool) error {
	return ethtool.SetTXChecksum(sock, ifname, on)
}

// txChecksumOn reports a link's TX checksum offload setting.
func txChecksumOn(sock int, ifname string) (bool, error) { return ethtool.TXChecksum(sock, ifname) }

// openEnvHere opens the sockets of the calling thread's own namespace (the
// process's: nothing in this module leaves a thread in another one).
func openEnvHere() (*nsEnv, error) {
	fd, err := netns.Get()
	if err != nil {
		return nil, fmt.Errorf("wiring: host namespace: %w", err)
	}
	env := &nsEnv{name: "", fd: fd, ioctl: -1}
	if env.rt, err = openRTNL(); err == nil {
		env.ioctl, err = unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	}
	if err != nil {
		env.close()
		return nil, fmt.Errorf("wiring: host namespace: %w", err)
	}
	return env, nil
}

// has reports whether the namespace held a link of that name when listed
// (never, for a namespace Apply created).
func (e *nsEnv) has(name string) bool {
	_, ok := e.existing[name]
	return ok
}

// planned returns the index to create a link with: the planned one in a
// namespace Apply created, else 0 (the kernel picks; refresh finds it).
func (e *nsEnv) planned(index int) int {
	if e.existing == nil {
		return index
	}
	return 0
}

// index returns the index of a link created in this namespace.
func (e *nsEnv) index(name string, planned int) (int, error) {
	if e.existing == nil {
		return planned, nil
	}
	if l, ok := e.existing[name]; ok {
		return l.Attrs().Index, nil
	}
	return 0, fmt.Errorf("link %s not found in namespace %s", name, e.name)
}

// del deletes a link found by refresh (a stray end of a broken pair).
func (e *nsEnv) del(name string) error {
	l, ok := e.existing[name]
	if !ok {
		return nil
	}
	h, err := netlink.NewHandleAt(e.fd, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := h.LinkDel(l); err != nil && !errors.Is(err, unix.ENODEV) {
		return fmt.Errorf("delete stray %s: %w", name, err)
	}
	delete(e.existing, name)
	return nil
}
