package qemulaunch

import (
	"fmt"

	"github.com/endpointkit/endpointkit/vmimage"
)

// nicLayout is the image's NIC layout (see [vmimage.Layout]) with the
// config's NIC model, checked against the interfaces to place. A layout
// holding fewer data NICs than Interfaces is an error wrapping ErrConfig
// and vmimage.ErrNICLayout; a layout that cannot be placed is the image's
// fault (ErrImage).
func (c Config) nicLayout() (vmimage.Layout, error) {
	l := c.Image.Manifest.Layout()
	l.Model = c.NICModel
	if err := l.Validate(); err != nil {
		return l, fmt.Errorf("%w: %s: %w", ErrImage, imageManifest(c.Image), err)
	}
	if n := len(c.Interfaces); n > l.Capacity() {
		return l, fmt.Errorf("%w: Interfaces: %d data interfaces, but image %s's NIC layout holds %d (%s): %w",
			ErrConfig, n, c.Image.Manifest.Slug, l.Capacity(), l, vmimage.ErrNICLayout)
	}
	return l, nil
}

// placeDevices lays the VM's devices out on the PCI bus: the NICs where
// the image's NIC layout puts them (so the guest's names come out as the
// image says), then the launcher's own devices — overlay disk, cloud-init
// seed, lesson share — in the slots from vmimage.AuxSlot up, so every
// slot the layout gives NICs stays free for a NIC added later. It sets
// the plan's overlay and base disk.
func (c Config) placeDevices(p *Plan) ([]device, error) {
	l, err := c.nicLayout()
	if err != nil {
		return nil, err
	}
	devs := []device{userNIC{model: l.Model, mac: c.Management.MAC.String(), addr: c.Management.Address,
		forwards: p.Forwards, at: l.ManagementNIC()}}
	for i, it := range c.Interfaces {
		at, err := l.DataNIC(c.dataIndex(i))
		if err != nil {
			return nil, fmt.Errorf("%w: Interfaces[%d]: %w", ErrConfig, i, err)
		}
		devs = append(devs, tapNIC{model: l.Model, tap: it.TAP, mac: it.MAC.String(), mtu: it.MTU, at: at})
	}
	aux := vmimage.AuxSlot
	next := func() int { aux++; return aux - 1 }
	m := c.Image.Manifest
	if m.Disk != "" {
		p.Overlay = p.Dir.Overlay()
		p.BaseDisk = c.Image.Path(m.Disk)
		p.BaseFormat = m.DiskFormat
		if p.BaseFormat == "" {
			p.BaseFormat = "qcow2"
		}
		d := disk{path: p.Overlay, bus: m.QEMU.DiskBus}
		if d.bus != "ide" { // IDE hangs off the chipset
			d.slot = next()
		}
		devs = append(devs, d)
	}
	if m.Seed != "" {
		devs = append(devs, seed{path: c.Image.Path(m.Seed), slot: next()})
	}
	if c.LessonDir != "" {
		devs = append(devs, share9p{path: c.LessonDir, tag: ShareTag, slot: next()})
	}
	return devs, nil
}

// dataIndex is the data NIC index of Interfaces[i]: N for ethN when every
// interface is named ethN — so a NIC keeps its place (and its guest
// name) when another was removed, and a restarted VM has each NIC where
// it was hot-plugged — else its position, 1-based.
func (c Config) dataIndex(i int) int {
	for _, it := range c.Interfaces {
		if _, ok := dataIndex(it.Name); !ok {
			return i + 1
		}
	}
	n, _ := dataIndex(c.Interfaces[i].Name)
	return n
}

// placeNIC is where the image's NIC layout puts data NIC n, and its
// guest name.
func (c Config) placeNIC(n int) (NIC, error) {
	at, err := c.dataNIC(n)
	if err != nil {
		return NIC{}, err
	}
	return NIC{Index: n, PCI: at.Addr.String(), Slot: at.Addr.Slot, GuestName: at.Name}, nil
}

// dataNIC is data NIC n as the image's NIC layout places it.
func (c Config) dataNIC(n int) (vmimage.NIC, error) {
	l, err := c.nicLayout()
	if err != nil {
		return vmimage.NIC{}, err
	}
	return l.DataNIC(n)
}
