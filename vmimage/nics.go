package vmimage

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// An image's NIC layout says how its guest sees the lesson's interfaces:
// where each NIC sits on the root PCI bus, which device model it is, and
// the name the guest gives it. The launcher places NICs where the layout
// says (at boot, and a NIC added later goes to the same address the layout
// gives its index); the image makes the names true (systemd .link files
// matching the PCI path in debootstrap images, the agent in the tiny one).

// Placement says how data NICs share the PCI bus.
type Placement string

// Placements.
const (
	// PlaceSlots gives every data NIC a slot of its own (function 0), in
	// consecutive slots: the default. PCI hot-plug works per slot, so
	// only this placement can take NICs added to a running guest (and
	// only on machine pc: the root bus of q35 has no hot-plug).
	PlaceSlots Placement = "slots"
	// PlaceFunctions makes the data NICs functions of consecutive slots,
	// eight per slot, as Antidote's frr and cvx images and vrnetlab did.
	PlaceFunctions Placement = "functions"
)

// PCI slots on the guest's root bus. The chipsets own slots 0, 1 (i440fx)
// and 31 (q35); the launcher puts its own devices (disk, cloud-init seed,
// lesson share) from AuxSlot up; NICs live in between.
const (
	MinNICSlot = 2
	MaxNICSlot = 26
	AuxSlot    = 27
)

// Layout defaults: the management NIC in slot 2, data NICs from slot 3.
const (
	DefaultManagementSlot = 2
	DefaultDataSlot       = 3
	DefaultNICModel       = "virtio-net-pci"
)

// PCIAddr is a device's slot and function on the guest's root PCI bus.
type PCIAddr struct {
	Slot     int `json:"slot"`
	Function int `json:"function,omitempty"`
}

// String is lspci's short form, "03.1".
func (a PCIAddr) String() string { return fmt.Sprintf("%02x.%x", a.Slot, a.Function) }

// Sysfs is the device's name under /sys/bus/pci/devices, "0000:00:03.1";
// udev's ID_PATH (a .link file's Path=) is "pci-" followed by it.
func (a PCIAddr) Sysfs() string { return "0000:00:" + a.String() }

// QEMU is the value of a -device addr= property: "0x3" or "0x3.0x1".
func (a PCIAddr) QEMU() string {
	if a.Function == 0 {
		return fmt.Sprintf("0x%x", a.Slot)
	}
	return fmt.Sprintf("0x%x.0x%x", a.Slot, a.Function)
}

func (a PCIAddr) less(b PCIAddr) bool {
	return a.Slot < b.Slot || a.Slot == b.Slot && a.Function < b.Function
}

// NICLayout is the layout as a manifest records it; zero fields take the
// defaults shown. The data NICs' guest names are Manifest.NetworkInterfaces
// and their model QEMUHints.NICModel; [Manifest.Layout] puts it together.
type NICLayout struct {
	// Placement of the data NICs (default PlaceSlots).
	Placement Placement `json:"placement,omitempty"`
	// Data is the address of data NIC 1, the container's eth1 (default
	// slot 3, function 0).
	Data PCIAddr `json:"data,omitzero"`
	// Slots is how many slots the data NICs may take: default, every
	// slot from Data up to MaxNICSlot (PlaceSlots) or one (PlaceFunctions).
	Slots int `json:"slots,omitempty"`
	// Management is the management NIC's address (default slot 2). It
	// must come before Data on the bus, so the kernel numbers the NICs
	// eth0, eth1, … in the layout's order.
	Management PCIAddr `json:"management,omitzero"`
	// ManagementName is the guest's name for the management NIC (default
	// eth0).
	ManagementName string `json:"managementName,omitempty"`
}

// Layout is an image's NIC layout with every default applied: what a
// launcher places and an image builder names.
type Layout struct {
	NICLayout
	// Model is the QEMU device of every NIC (QEMUHints.NICModel).
	Model string
	// Names are the guest's names of data NICs 1, 2, …
	// (Manifest.NetworkInterfaces); a NIC beyond them keeps the kernel's
	// name, ethN.
	Names []string
}

// Layout returns the image's NIC layout with its defaults.
func (m *Manifest) Layout() Layout {
	l := Layout{NICLayout: m.NICs, Model: m.QEMU.NICModel, Names: m.NetworkInterfaces}
	if l.Model == "" {
		l.Model = DefaultNICModel
	}
	if l.Placement == "" {
		l.Placement = PlaceSlots
	}
	if l.Data.Slot == 0 {
		l.Data = PCIAddr{Slot: DefaultDataSlot, Function: l.Data.Function}
	}
	if l.Management.Slot == 0 {
		l.Management = PCIAddr{Slot: DefaultManagementSlot, Function: l.Management.Function}
	}
	if l.Slots == 0 {
		l.Slots = 1
		if l.Placement == PlaceSlots {
			l.Slots = max(MaxNICSlot-l.Data.Slot+1, 1)
		}
	}
	if l.ManagementName == "" {
		l.ManagementName = "eth0"
	}
	return l
}

// NIC is one NIC as the layout places it.
type NIC struct {
	// Index is 0 for the management NIC, N for data NIC N (behind the
	// container's ethN).
	Index int
	Addr  PCIAddr
	// Multifunction marks function 0 of a slot whose other functions the
	// layout uses: QEMU must be told (multifunction=on) or the guest
	// never looks for them.
	Multifunction bool
	// Name is the guest's name for the NIC.
	Name string
}

// QEMU is the NIC's -device placement properties, e.g. "addr=0x3" or
// "addr=0x3,multifunction=on".
func (n NIC) QEMU() string {
	s := "addr=" + n.Addr.QEMU()
	if n.Multifunction {
		s += ",multifunction=on"
	}
	return s
}

// KernelName reports whether Name is the one the kernel gives the NIC
// (ethN, N its index), so the image need not rename it.
func (n NIC) KernelName() bool { return n.Name == "eth"+strconv.Itoa(n.Index) }

// ErrNICLayout is wrapped by every error about a NIC layout: one that
// cannot be placed, or that holds fewer data NICs than asked for.
var ErrNICLayout = errors.New("NIC layout")

// LayoutError is one problem [Layout.Validate] found, naming the field as
// a manifest or recipe spells it ("nics.data.function",
// "networkInterfaces[2]"). It matches ErrNICLayout.
type LayoutError struct {
	Field string
	Msg   string
}

func (e *LayoutError) Error() string { return fmt.Sprintf("%v: %s: %s", ErrNICLayout, e.Field, e.Msg) }

// Unwrap returns ErrNICLayout.
func (e *LayoutError) Unwrap() error { return ErrNICLayout }

// Capacity is how many data NICs the layout holds.
func (l Layout) Capacity() int {
	if l.Placement == PlaceFunctions {
		return l.Slots*8 - l.Data.Function
	}
	return l.Slots
}

// ManagementNIC is where the management NIC goes.
func (l Layout) ManagementNIC() NIC {
	return NIC{Index: 0, Addr: l.Management, Name: l.ManagementName, Multifunction: l.multifunction(l.Management)}
}

// DataNIC is where data NIC i (1-based, the container's eth<i>) goes; an
// index beyond Capacity is an error wrapping ErrNICLayout.
func (l Layout) DataNIC(i int) (NIC, error) {
	if i < 1 || i > l.Capacity() {
		return NIC{}, fmt.Errorf("%w: %s: no place for data NIC %d (it holds %d)", ErrNICLayout, l, i, l.Capacity())
	}
	var a PCIAddr
	if l.Placement == PlaceFunctions {
		k := l.Data.Function + i - 1
		a = PCIAddr{Slot: l.Data.Slot + k/8, Function: k % 8}
	} else {
		a = PCIAddr{Slot: l.Data.Slot + i - 1}
	}
	name := "eth" + strconv.Itoa(i)
	if i <= len(l.Names) && l.Names[i-1] != "" {
		name = l.Names[i-1]
	}
	return NIC{Index: i, Addr: a, Name: name, Multifunction: l.multifunction(a)}, nil
}

// NICs are the management NIC and every data NIC the layout holds, in
// bus order.
func (l Layout) NICs() []NIC {
	out := []NIC{l.ManagementNIC()}
	for i := 1; i <= l.Capacity(); i++ {
		n, _ := l.DataNIC(i)
		out = append(out, n)
	}
	return out
}

// multifunction reports whether a is function 0 of a slot the data NICs
// share as functions.
func (l Layout) multifunction(a PCIAddr) bool {
	if l.Placement != PlaceFunctions || a.Function != 0 {
		return false
	}
	first, last := l.Data.Slot, l.Data.Slot+l.Slots-1
	// A one-function slot (only function 0 used) needs no flag.
	return a.Slot >= first && a.Slot <= last && !(l.Capacity() == 1 && l.Data.Function == 0)
}

// String describes the layout for people, e.g. "virtio-net-pci: management
// at 03.0 (enp0s3f0), data NICs at functions 1-7 of slot 3".
func (l Layout) String() string {
	var data string
	last := l.Data.Slot + l.Slots - 1
	switch {
	case l.Placement == PlaceFunctions && l.Slots == 1:
		data = fmt.Sprintf("functions %d-7 of slot %d", l.Data.Function, l.Data.Slot)
	case l.Placement == PlaceFunctions:
		data = fmt.Sprintf("the functions of slots %d-%d from %s", l.Data.Slot, last, l.Data)
	case l.Slots == 1:
		data = fmt.Sprintf("slot %d", l.Data.Slot)
	default:
		data = fmt.Sprintf("one per slot, slots %d-%d", l.Data.Slot, last)
	}
	return fmt.Sprintf("%s: management at %s (%s), data NICs at %s", l.Model, l.Management, l.ManagementName, data)
}

// ifName is what Linux accepts as an interface name (dev_valid_name).
var ifName = regexp.MustCompile(`^[^/:\s]{1,15}$`)

var kernelName = regexp.MustCompile(`^eth[0-9]+$`)

// Validate checks that the layout can be placed on the bus and its names
// given: slots in range, no two NICs at one address, function 0 present in
// every slot whose functions are used, the management NIC first, names
// valid and distinct. The errors wrap ErrNICLayout and name the field as
// in a manifest ("nics.data", "networkInterfaces[2]"): each is a
// *LayoutError, joined with errors.Join.
func (l Layout) Validate() error {
	var errs []error
	bad := func(field, format string, a ...any) {
		errs = append(errs, &LayoutError{Field: field, Msg: fmt.Sprintf(format, a...)})
	}
	if !strings.HasSuffix(l.Model, "-pci") && !isPCINIC(l.Model) {
		bad("qemu.nicModel", "%q is not a PCI NIC (want virtio-net-pci, e1000, e1000e, rtl8139, vmxnet3, …): only PCI NICs can be placed", l.Model)
	}
	switch l.Placement {
	case PlaceSlots, PlaceFunctions:
	default:
		bad("nics.placement", "%q: want %s or %s", l.Placement, PlaceSlots, PlaceFunctions)
	}
	for _, f := range []struct {
		field string
		a     PCIAddr
	}{{"nics.management", l.Management}, {"nics.data", l.Data}} {
		if f.a.Slot < MinNICSlot || f.a.Slot > MaxNICSlot {
			bad(f.field+".slot", "%d: NICs go in slots %d-%d (the chipsets own 0, 1 and 31; the launcher's disk and share take %d-30)",
				f.a.Slot, MinNICSlot, MaxNICSlot, AuxSlot)
		}
		if f.a.Function < 0 || f.a.Function > 7 {
			bad(f.field+".function", "%d: a PCI function is 0-7", f.a.Function)
		}
	}
	last := l.Data.Slot + l.Slots - 1
	switch {
	case l.Slots < 1:
		bad("nics.slots", "%d: want at least 1", l.Slots)
	case last > MaxNICSlot:
		bad("nics.slots", "%d slots from slot %d end at %d, past slot %d", l.Slots, l.Data.Slot, last, MaxNICSlot)
	}
	if l.Placement == PlaceSlots && l.Data.Function != 0 {
		bad("nics.data.function", "%d: with placement %s every data NIC is function 0 of its slot", l.Data.Function, PlaceSlots)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	mg := l.Management
	if mg.Slot >= l.Data.Slot && mg.Slot <= last {
		inData := l.Placement == PlaceSlots || mg.Slot > l.Data.Slot || mg.Function >= l.Data.Function
		if inData {
			bad("nics.management", "%s is also a data NIC's address (%s)", mg, l)
		}
	}
	if !mg.less(l.Data) {
		bad("nics.management", "%s comes after the first data NIC (%s) on the bus: the kernel would not number the management NIC eth0", mg, l.Data)
	}
	if l.Placement == PlaceFunctions && l.Data.Function > 0 && mg != (PCIAddr{Slot: l.Data.Slot}) {
		bad("nics.data.function", "%d: function 0 of slot %d would be empty and the guest would not see the other functions: start at function 0, or put the management NIC at %s",
			l.Data.Function, l.Data.Slot, PCIAddr{Slot: l.Data.Slot})
	}
	if mg.Function != 0 && (l.Placement != PlaceFunctions || mg.Slot != l.Data.Slot) {
		bad("nics.management.function", "%d: function 0 of slot %d would be empty", mg.Function, mg.Slot)
	}
	if len(l.Names) > l.Capacity() {
		bad("networkInterfaces", "%d names for a layout holding %d data NICs (%s)", len(l.Names), l.Capacity(), l)
	}
	seen := map[string]string{}
	check := func(field, name string, index int) {
		switch {
		case !ifName.MatchString(name) || name == "." || name == "..":
			bad(field, "%q is not a Linux interface name (1-15 characters, no '/', ':' or spaces)", name)
		case name == "lo":
			bad(field, `"lo" is the loopback interface`)
		case kernelName.MatchString(name) && name != "eth"+strconv.Itoa(index):
			bad(field, "%q: ethN names are the kernel's, given in bus order; this NIC is eth%d (or give it another name)", name, index)
		case seen[name] != "":
			bad(field, "%q is also %s", name, seen[name])
		}
		seen[name] = field
	}
	check("nics.managementName", l.ManagementName, 0)
	for i, n := range l.Names {
		check(fmt.Sprintf("networkInterfaces[%d]", i), n, i+1)
	}
	return errors.Join(errs...)
}

func isPCINIC(model string) bool {
	switch model {
	case "e1000", "e1000e", "rtl8139", "vmxnet3", "i82550", "i82551", "i82557a", "i82557b", "i82557c", "i82558a",
		"i82558b", "i82559a", "i82559b", "i82559c", "i82559er", "i82562", "i82801", "ne2k_pci", "pcnet", "igb":
		return true
	}
	return false
}

// PathName is the name systemd's "path" policy gives a NIC on the root bus
// of PCI domain 0: "enp0s3", or "enp0s3f1" for a function of a
// multifunction slot (udev's ID_NET_NAME_PATH).
func PathName(n NIC) string {
	s := "enp0s" + strconv.Itoa(n.Addr.Slot)
	if n.Addr.Function > 0 || n.Multifunction {
		s += "f" + strconv.Itoa(n.Addr.Function)
	}
	return s
}
