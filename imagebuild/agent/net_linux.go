package agent

import (
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

// linksUp brings lo and every ethN up. Data NICs get no address; the DHCP
// interfaces get theirs from udhcpc.
func linksUp(dhcp []string) error {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return err
	}
	var errs []error
	for _, l := range links {
		name := l.Attrs().Name
		if name != "lo" && !strings.HasPrefix(name, "eth") {
			continue
		}
		if err := netlink.LinkSetUp(l); err != nil {
			errs = append(errs, fmt.Errorf("%s up: %w", name, err))
		}
	}
	return errors.Join(errs...)
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
