package qemulaunch

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// ids hands out QEMU object IDs. One allocator per command line, so netdev,
// device, chardev and fsdev IDs never collide.
type ids struct{ next map[string]int }

func (a *ids) id(prefix string) string {
	if a.next == nil {
		a.next = map[string]int{}
	}
	n := a.next[prefix]
	a.next[prefix] = n + 1
	return prefix + strconv.Itoa(n)
}

// device is one QEMU back-end plus front-end that renders its own arguments.
type device interface {
	args(a *ids) ([]string, error)
}

var (
	_ device = userNIC{}
	_ device = tapNIC{}
	_ device = share9p{}
	_ device = disk{}
	_ device = seed{}
)

// qemuOpt escapes a value for QEMU's comma-separated option syntax.
func qemuOpt(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// nicDevice is a NIC's front end (-device) at the place the image's NIC
// layout gives it; id, when set, is its QEMU ID (data NICs have one, so
// that they can be removed while the VM runs).
type nicDevice struct {
	model, netdev, mac string
	at                 vmimage.NIC
	mtu                int
	id                 string
}

// props are the device's properties in command-line order (a QMP
// device_add of a NIC added later takes the same, as a map).
func (d nicDevice) props() [][2]string {
	var p [][2]string
	if d.id != "" {
		p = append(p, [2]string{"id", d.id})
	}
	p = append(p, [2]string{"netdev", d.netdev}, [2]string{"mac", d.mac}, [2]string{"addr", d.at.Addr.QEMU()})
	if d.at.Multifunction {
		p = append(p, [2]string{"multifunction", "on"})
	}
	if d.mtu > 0 && strings.HasPrefix(d.model, "virtio-net") {
		p = append(p, [2]string{"host_mtu", strconv.Itoa(d.mtu)})
	}
	return p
}

// String renders the -device value.
func (d nicDevice) String() string {
	s := d.model
	for _, kv := range d.props() {
		s += "," + kv[0] + "=" + kv[1]
	}
	return s
}

// userNIC is the management NIC on QEMU user-mode networking, forwarding
// exactly the given ports from the management address.
type userNIC struct {
	model    string
	mac      string
	addr     netip.Addr
	forwards []Forward
	at       vmimage.NIC
}

func (n userNIC) args(a *ids) ([]string, error) {
	id := a.id("net")
	b := "user,id=" + id
	host := ""
	if n.addr.IsValid() {
		host = n.addr.String()
		if n.addr.Is6() {
			return nil, fmt.Errorf("management address %s: only IPv4 host forwarding is supported", n.addr)
		}
	}
	for _, f := range n.forwards {
		if f.HostPort <= 0 {
			return nil, fmt.Errorf("forward %s: host port not resolved", f)
		}
		b += fmt.Sprintf(",hostfwd=%s:%s:%d-:%d", f.proto(), host, f.HostPort, f.GuestPort)
	}
	return []string{"-netdev", b, "-device", nicDevice{model: n.model, netdev: id, mac: n.mac, at: n.at}.String()}, nil
}

// tapNIC is a data NIC on a pre-created, persistent TAP (opened by name),
// with the IDs of data NIC at.Index (nicIDs), as a NIC added later gets.
type tapNIC struct {
	model string
	tap   string
	mac   string
	mtu   int
	at    vmimage.NIC
}

func (n tapNIC) args(*ids) ([]string, error) {
	netdev, id := nicIDs(n.at.Index)
	return []string{
		"-netdev", fmt.Sprintf("tap,id=%s,ifname=%s,script=no,downscript=no", netdev, n.tap),
		"-device", nicDevice{model: n.model, netdev: netdev, mac: n.mac, at: n.at, mtu: n.mtu, id: id}.String(),
	}, nil
}

// share9p shares a host directory read-only over virtio-9p.
type share9p struct {
	path string
	tag  string
	slot int
}

func (s share9p) args(a *ids) ([]string, error) {
	id := a.id("fsdev")
	return []string{
		"-fsdev", fmt.Sprintf("local,id=%s,path=%s,security_model=none,readonly=on", id, qemuOpt(s.path)),
		"-device", fmt.Sprintf("virtio-9p-pci,fsdev=%s,mount_tag=%s%s", id, s.tag, slotProp(s.slot)),
	}, nil
}

// disk is the per-instance overlay on the image's disk bus.
type disk struct {
	path string
	bus  string
	slot int // of the virtio-blk or virtio-scsi controller
}

func (d disk) args(a *ids) ([]string, error) {
	id := a.id("disk")
	drive := fmt.Sprintf("file=%s,format=qcow2,if=none,id=%s,cache=writeback,discard=unmap", qemuOpt(d.path), id)
	var front string
	switch d.bus {
	case "", "virtio":
		front = "virtio-blk-pci,drive=" + id + slotProp(d.slot)
	case "ide":
		front = "ide-hd,drive=" + id
	case "scsi":
		sid := a.id("scsi")
		return []string{"-drive", drive, "-device", "virtio-scsi-pci,id=" + sid + slotProp(d.slot),
			"-device", fmt.Sprintf("scsi-hd,drive=%s,bus=%s.0", id, sid)}, nil
	default:
		return nil, fmt.Errorf("disk bus %q: want virtio, ide or scsi", d.bus)
	}
	return []string{"-drive", drive, "-device", front}, nil
}

// seed is a read-only cloud-init NoCloud seed drive.
type seed struct {
	path string
	slot int
}

func (d seed) args(a *ids) ([]string, error) {
	id := a.id("seed")
	return []string{"-drive", fmt.Sprintf("file=%s,format=raw,if=none,id=%s,readonly=on", qemuOpt(d.path), id),
		"-device", "virtio-blk-pci,drive=" + id + slotProp(d.slot)}, nil
}

// slotProp pins a device to a slot; 0 leaves the choice to QEMU.
func slotProp(slot int) string {
	if slot == 0 {
		return ""
	}
	return fmt.Sprintf(",addr=0x%x", slot)
}
