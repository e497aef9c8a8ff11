package imagebuild

import (
	"errors"
	"fmt"

	"github.com/endpointkit/endpointkit/imagebuild/agent"
	"github.com/endpointkit/endpointkit/vmimage"
)

// RecipeNICs is a recipe's NIC layout: where the NICs sit on the guest's
// root PCI bus and how the guest names them (see vmimage.NICLayout). The
// NIC model is qemu.nicModel. Antidote's frr image, for example:
//
//	nics:
//	  placement: functions              # data NICs are functions of slot 3
//	  data: {slot: 3, function: 1}      # data NIC 1 at 03.1, … 7 at 03.7
//	  management: {slot: 3, function: 0}
//	  naming: path                      # enp0s3f0 (management), enp0s3f1, …
type RecipeNICs struct {
	// Placement of the data NICs: slots (one slot each, default) or
	// functions (eight to a slot).
	Placement string `yaml:"placement,omitempty" json:"placement,omitempty" jsonschema:"enum=slots,enum=functions"`
	// Data is the address of data NIC 1 (default slot 3, function 0).
	Data RecipePCIAddr `yaml:"data,omitempty" json:"data,omitzero"`
	// Slots is how many slots the data NICs may take (default: up to
	// slot 26 with placement slots, one with functions).
	Slots int `yaml:"slots,omitempty" json:"slots,omitempty" jsonschema:"minimum=0"`
	// Management is the management NIC's address (default slot 2); it
	// comes before the data NICs on the bus.
	Management RecipePCIAddr `yaml:"management,omitempty" json:"management,omitzero"`
	// ManagementName is the guest's name for the management NIC (default:
	// eth0, or the name nics.naming gives).
	ManagementName string `yaml:"managementName,omitempty" json:"managementName,omitempty"`
	// Naming gives the NICs that networkInterfaces and managementName
	// leave unnamed their names: kernel (default: eth0, eth1, … in bus
	// order) or path (systemd's names from the PCI address, as udev's
	// path policy makes them on a q35 machine: enp0s3, enp0s3f1).
	Naming string `yaml:"naming,omitempty" json:"naming,omitempty" jsonschema:"enum=kernel,enum=path"`
}

// RecipePCIAddr is a slot and function on the root PCI bus.
type RecipePCIAddr struct {
	Slot     int `yaml:"slot" json:"slot" jsonschema:"minimum=2,maximum=26"`
	Function int `yaml:"function,omitempty" json:"function,omitempty" jsonschema:"minimum=0,maximum=7"`
}

// Namings of RecipeNICs.
const (
	NamingKernel = "kernel"
	NamingPath   = "path"
)

func (n RecipeNICs) layout() vmimage.NICLayout {
	return vmimage.NICLayout{Placement: vmimage.Placement(n.Placement),
		Data:           vmimage.PCIAddr{Slot: n.Data.Slot, Function: n.Data.Function},
		Slots:          n.Slots,
		Management:     vmimage.PCIAddr{Slot: n.Management.Slot, Function: n.Management.Function},
		ManagementName: n.ManagementName}
}

// resolveNICs checks the recipe's NIC layout and, with naming path, fills
// in the names (r.NetworkInterfaces for every data NIC the layout holds,
// r.NICs.ManagementName). Problems are reported through bad, by field.
func (r *Recipe) resolveNICs(bad func(field, format string, a ...any)) {
	switch r.NICs.Naming {
	case "", NamingKernel, NamingPath:
	default:
		bad("nics.naming", "%q: want %s or %s%s", r.NICs.Naming, NamingKernel, NamingPath, didYouMean(r.NICs.Naming, NamingKernel, NamingPath))
	}
	if p := r.NICs.Placement; p != "" && p != string(vmimage.PlaceSlots) && p != string(vmimage.PlaceFunctions) {
		bad("nics.placement", "%q: want %s or %s%s", p, vmimage.PlaceSlots, vmimage.PlaceFunctions,
			didYouMean(p, string(vmimage.PlaceSlots), string(vmimage.PlaceFunctions)))
		return
	}
	l := r.layout()
	if err := l.Validate(); err != nil {
		var les interface{ Unwrap() []error }
		if errors.As(err, &les) {
			for _, e := range les.Unwrap() {
				var le *vmimage.LayoutError
				if errors.As(e, &le) {
					bad(le.Field, "%s", le.Msg)
				}
			}
		}
		return
	}
	if r.NICs.Naming != NamingPath {
		return
	}
	if r.NICs.ManagementName == "" {
		r.NICs.ManagementName = vmimage.PathName(l.ManagementNIC())
	}
	names := append([]string(nil), r.NetworkInterfaces...)
	for i := 1; i <= l.Capacity(); i++ {
		n, _ := l.DataNIC(i)
		if i > len(names) {
			names = append(names, vmimage.PathName(n))
		}
	}
	r.NetworkInterfaces = names
	if err := r.layout().Validate(); err != nil {
		bad("nics.naming", "path names clash with the given ones: %v", err)
	}
}

// layout is the recipe's NIC layout as the manifest will record it.
func (r *Recipe) layout() vmimage.Layout {
	m := vmimage.Manifest{NICs: r.NICs.layout(), NetworkInterfaces: r.NetworkInterfaces, QEMU: vmimage.QEMUHints{NICModel: r.QEMU.NICModel}}
	return m.Layout()
}

// renamedNICs are the NICs whose guest names the image must set (those
// the kernel does not give), in bus order.
func renamedNICs(l vmimage.Layout) []vmimage.NIC {
	var out []vmimage.NIC
	for _, n := range l.NICs() {
		if !n.KernelName() {
			out = append(out, n)
		}
	}
	return out
}

// linkFile is the systemd .link file that names the NIC at n's PCI
// address (debootstrap images; udev applies it when the NIC appears,
// also when it is added to a running guest).
func linkFile(n vmimage.NIC) (path string, body []byte) {
	return fmt.Sprintf("/etc/systemd/network/10-endpointkit-%s.link", n.Name), fmt.Appendf(nil,
		"# endpointkit: the image's NIC layout names the NIC at PCI %s %s.\n[Match]\nPath=pci-%s\n\n[Link]\nName=%s\n",
		n.Addr, n.Name, n.Addr.Sysfs(), n.Name)
}

// linkFiles are the .link files of every NIC the image renames.
func linkFiles(l vmimage.Layout) fsPlan {
	var p fsPlan
	for _, n := range renamedNICs(l) {
		path, body := linkFile(n)
		p = append(p, fileEntry(path, 0o644, body))
	}
	return p
}

// agentNICNames are the tiny agent's renames (the same as linkFiles').
func agentNICNames(l vmimage.Layout) []agent.NICName {
	var out []agent.NICName
	for _, n := range renamedNICs(l) {
		out = append(out, agent.NICName{PCI: n.Addr.Sysfs(), Name: n.Name})
	}
	return out
}
