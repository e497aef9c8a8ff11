package agent

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// linksUp brings lo, every ethN and every NIC the layout names up, naming
// it first. Data NICs get no address; the DHCP interfaces get theirs from
// the DHCP client.
func linksUp(n *nicNamer) error {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return err
	}
	var errs []error
	for _, l := range links {
		l = n.name(l)
		name := l.Attrs().Name
		if name != "lo" && !strings.HasPrefix(name, "eth") && !n.named(name) {
			continue
		}
		if err := netlink.LinkSetUp(l); err != nil {
			errs = append(errs, fmt.Errorf("%s up: %w", name, err))
		}
	}
	return errors.Join(errs...)
}

// waitLinkUp waits until the interface exists (its driver may still be
// loading) and brings it up.
func waitLinkUp(ctx context.Context, name string) error {
	updates := make(chan netlink.LinkUpdate, 16)
	done := make(chan struct{})
	defer close(done)
	if err := netlink.LinkSubscribe(updates, done); err != nil {
		return fmt.Errorf("watch links: %w", err)
	}
	link, err := netlink.LinkByName(name)
	for err != nil {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-updates:
			if !ok {
				return fmt.Errorf("watch links: subscription ended before %s appeared", name)
			}
			if u.Attrs().Name == name {
				link, err = u.Link, nil
			}
		}
	}
	if err := netlink.LinkSetUp(link); err != nil {
		return fmt.Errorf("%s up: %w", name, err)
	}
	return nil
}

// virtio9P is the virtio device ID of the 9p transport.
const virtio9P = 9

// hasVirtioDevice reports whether a virtio device of the given device ID
// exists (its transport driver, virtio_pci, must be loaded).
func hasVirtioDevice(id int) bool {
	devs, _ := filepath.Glob("/sys/bus/virtio/devices/virtio*/device")
	for _, d := range devs {
		raw, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		if n, err := strconv.ParseInt(strings.TrimSpace(string(raw)), 0, 32); err == nil && int(n) == id {
			return true
		}
	}
	return false
}

// ifaceAddr returns the first IPv4 address of an interface, or "none".
func ifaceAddr(name string) string {
	ifc, err := net.InterfaceByName(name)
	if err != nil {
		return "none"
	}
	addrs, _ := ifc.Addrs()
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && n.IP.To4() != nil {
			return n.String()
		}
	}
	return "none"
}

// has9PTag reports whether a virtio 9p device with this mount tag exists.
func has9PTag(tag string) bool {
	devs, _ := filepath.Glob("/sys/bus/virtio/drivers/9pnet_virtio/virtio*/mount_tag")
	for _, d := range devs {
		raw, err := os.ReadFile(d)
		if err == nil && strings.TrimRight(string(raw), "\x00\n") == tag {
			return true
		}
	}
	return false
}

func mount9P(tag, path string) error {
	if err := os.MkdirAll(path, 0o755); err != nil {
		return err
	}
	opts := "trans=virtio,version=9p2000.L,msize=" + strconv.Itoa(512*1024)
	if err := unix.Mount(tag, path, "9p", 0, opts); err != nil {
		return fmt.Errorf("mount 9p %s on %s: %w", tag, path, err)
	}
	return nil
}

func listen(port int) (net.Listener, error) {
	ln, err := net.Listen("tcp", ":"+strconv.Itoa(port))
	if err != nil {
		return nil, fmt.Errorf("agent: ssh listen: %w", err)
	}
	return ln, nil
}
