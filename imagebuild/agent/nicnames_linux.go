package agent

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// nicNamer gives NICs the names of the image's NIC layout (Config.NICNames)
// by PCI address and brings them up: at boot, and for a NIC added to the
// running guest later, as each appears. A nil *nicNamer names nothing.
type nicNamer struct {
	mu    sync.Mutex
	names map[string]string // PCI address → name
	log   *slog.Logger
}

func newNICNamer(names []NICName, log *slog.Logger) *nicNamer {
	if len(names) == 0 {
		return nil
	}
	n := &nicNamer{names: map[string]string{}, log: log}
	for _, nn := range names {
		n.names[nn.PCI] = nn.Name
	}
	return n
}

// named reports whether name is one the layout gives.
func (n *nicNamer) named(name string) bool {
	if n == nil {
		return false
	}
	for _, v := range n.names {
		if v == name {
			return true
		}
	}
	return false
}

// name renames l when the layout names its PCI address otherwise, and
// returns the link as it is now. The kernel refuses to rename a link that
// is up: rename before anything brings it up.
func (n *nicNamer) name(l netlink.Link) netlink.Link {
	if n == nil {
		return l
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	cur := l.Attrs().Name
	want, ok := n.names[pciAddress(cur)]
	if !ok || want == cur {
		return l
	}
	if err := netlink.LinkSetName(l, want); err != nil {
		n.log.Warn("name NIC", "nic", cur, "name", want, "err", err)
		return l
	}
	if nl, err := netlink.LinkByName(want); err == nil {
		return nl
	}
	return l
}

// watch names and brings up every NIC that appears until ctx ends (the
// boot's NICs that virtio_net probes after Init started, and NICs added
// later).
func (n *nicNamer) watch(ctx context.Context) error {
	if n == nil {
		return nil
	}
	updates := make(chan netlink.LinkUpdate, 64)
	if err := netlink.LinkSubscribeWithOptions(updates, ctx.Done(), netlink.LinkSubscribeOptions{ListExisting: true}); err != nil {
		return err
	}
	go func() {
		for u := range updates {
			if u.Header.Type != unix.RTM_NEWLINK || u.Attrs().Name == "lo" {
				continue
			}
			if l := n.name(u.Link); n.named(l.Attrs().Name) && l.Attrs().RawFlags&unix.IFF_UP == 0 {
				if err := netlink.LinkSetUp(l); err != nil {
					n.log.Warn("NIC up", "nic", l.Attrs().Name, "err", err)
				}
			}
		}
	}()
	return nil
}

// pciAddress is the root-bus PCI address of a NIC ("0000:00:03.1"): its
// device in sysfs, or the PCI device above its virtio device; "" when it
// has none.
func pciAddress(ifname string) string {
	dev, err := filepath.EvalSymlinks(filepath.Join("/sys/class/net", ifname, "device"))
	if err != nil {
		return ""
	}
	if strings.HasPrefix(filepath.Base(dev), "virtio") {
		dev = filepath.Dir(dev)
	}
	if _, err := os.Stat(filepath.Join(dev, "config")); err != nil { // PCI devices have a config space
		return ""
	}
	return filepath.Base(dev)
}
