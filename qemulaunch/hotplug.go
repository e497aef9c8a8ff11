package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
)

// ErrNoHotplug: a NIC cannot be added to or removed from the running VM:
// its machine type or the image's NIC layout has no hot-pluggable place
// for it, or the guest did not release a NIC it was asked to.
var ErrNoHotplug = errors.New("qemulaunch: no NIC hot-plug")

// ErrNoNIC: the VM has no NIC behind that container interface.
var ErrNoNIC = errors.New("qemulaunch: no such NIC")

// releaseTimeout bounds the wait for the guest to release a NIC after
// device_del (×TCGFactor under TCG). A guest with ACPI PCI hot-plug takes
// well under a second.
const releaseTimeout = 10 * time.Second

// NIC is a data NIC of a running VM: where it sits and what it is made
// of. [VM.AddNIC] and [AddNIC] return it.
type NIC struct {
	Interface string `json:"interface"` // the container interface, ethN
	TAP       string `json:"tap"`
	MAC       string `json:"mac"`
	MTU       int    `json:"mtu"`
	// Index is the NIC's data index N: the image's NIC layout places
	// data NIC N (the container's ethN) at PCI.
	Index int    `json:"index"`
	PCI   string `json:"pci"` // root-bus address, "05.0"
	// Slot is its PCI slot: a guest that can take it hot-plugged lists
	// /sys/bus/pci/slots/<Slot> (ACPI PCI hot-plug, acpiphp).
	Slot int `json:"slot"`
	// GuestName is the guest's name for it, as the image's NIC layout
	// gives it.
	GuestName string `json:"guestName"`
	// Device and Netdev are the QEMU IDs of its front and back end.
	Device string `json:"device"`
	Netdev string `json:"netdev"`
}

// nicState is a NIC of the VM with what undoes it.
type nicState struct {
	NIC
	rec  *stitchRec
	undo []func() error // in creation order: TAP, stitch
}

// nicIDs are the QEMU IDs of data NIC index's back and front end.
func nicIDs(index int) (netdev, device string) {
	return "hostnet" + strconv.Itoa(index), "nic" + strconv.Itoa(index)
}

// defaultTAP is the TAP of container interface name: "tap" + its number.
func defaultTAP(name string) string {
	return "tap" + strings.TrimLeft(name, "abcdefghijklmnopqrstuvwxyz_-.")
}

// HotplugNIC says where a NIC added to the running VM behind container
// interface name (ethN: data NIC N) goes — where the image's NIC layout
// puts data NIC N, with the layout's guest name — and refuses, wrapping
// ErrNoHotplug, what cannot be hot-plugged: a machine type whose root bus
// takes no hot-plugged devices (q35), ACPI turned off, a layout that puts
// data NICs in the functions of one slot, an index beyond the layout
// (also vmimage.ErrNICLayout). It reads nothing from the system; the
// orchestration checks with it before it changes anything.
func (c Config) HotplugNIC(name string) (NIC, error) {
	c = c.withDefaults()
	if c.Image == nil {
		return NIC{}, configErr("Image", "no image")
	}
	n, ok := dataIndex(name)
	if !ok {
		return NIC{}, configErr("Interfaces", "%q: a NIC added to a running VM sits behind an interface named ethN (N ≥ 1)", name)
	}
	if err := hotplugMachine(c); err != nil {
		return NIC{}, err
	}
	l, err := c.nicLayout()
	if err != nil {
		return NIC{}, err
	}
	if l.Placement != vmimage.PlaceSlots {
		return NIC{}, fmt.Errorf("%w: image %s lays its data NICs out as %s (%s); PCI hot-plug adds whole slots, so NICs cannot be added to it while it runs",
			ErrNoHotplug, c.Image.Manifest.Slug, l.Placement, l)
	}
	nic, err := c.placeNIC(n)
	if err != nil {
		return NIC{}, fmt.Errorf("%w: %s: %w", ErrNoHotplug, name, err)
	}
	nic.Interface, nic.TAP = name, defaultTAP(name)
	nic.Netdev, nic.Device = nicIDs(n)
	return nic, nil
}

// hotplugMachine refuses machines without hot-plug on the root bus.
func hotplugMachine(c Config) error {
	machine, opts, _ := strings.Cut(c.Machine, ",")
	args := strings.Join(append(append([]string{}, c.Image.Manifest.QEMU.ExtraArgs...), c.ExtraArgs...), " ")
	switch {
	case machine == "q35" || strings.HasPrefix(machine, "pc-q35"):
		return fmt.Errorf("%w: machine %s (image %s): the root PCI Express bus of q35 takes no hot-plugged devices; NICs can be added at run time on machine pc",
			ErrNoHotplug, machine, c.Image.Manifest.Slug)
	case machine != "pc" && !strings.HasPrefix(machine, "pc-i440fx"):
		return fmt.Errorf("%w: machine %s (image %s): NICs are hot-plugged on machine pc only", ErrNoHotplug, machine, c.Image.Manifest.Slug)
	case strings.Contains(","+opts+",", ",acpi=off,") || strings.Contains(" "+args+" ", " -no-acpi "):
		return fmt.Errorf("%w: image %s runs without ACPI, which carries PCI hot-plug on machine pc", ErrNoHotplug, c.Image.Manifest.Slug)
	}
	return nil
}

// dataIndex is N of a container interface ethN (N ≥ 1).
func dataIndex(name string) (int, bool) {
	digits, ok := strings.CutPrefix(name, "eth")
	if !ok || digits == "" || digits[0] == '0' || len(digits) > 3 || strings.Trim(digits, "0123456789") != "" {
		return 0, false
	}
	n, _ := strconv.Atoi(digits)
	return n, true
}

// AddNIC adds a data NIC to the running VM behind container interface
// it.Name, as at boot: it waits (bounded) for the interface in the VM's
// namespace, creates and stitches a TAP (it.TAP, default tapN; MTU
// it.MTU, default the interface's), then hot-plugs the NIC over QMP
// (netdev_add, device_add) where HotplugNIC places it, with MAC it.MAC
// (required). It fails, leaving nothing behind, when the VM already has
// that NIC or TAP, the place is taken, or the machine cannot take it
// (ErrNoHotplug). The guest sees the NIC only if its kernel handles PCI
// hot-plug there; bringing it up is the guest's business. Changes are
// serialised; the VM's cleanup removes added NICs' TAPs and stitches as
// it does the boot's.
func (vm *VM) AddNIC(ctx context.Context, it Interface) (NIC, error) {
	vm.hot.Lock()
	defer vm.hot.Unlock()
	mon, err := vm.monitor()
	if err != nil {
		return NIC{}, err
	}
	nic, err := vm.cfg.HotplugNIC(it.Name)
	if err != nil {
		return NIC{}, err
	}
	if it.TAP != "" {
		nic.TAP = it.TAP
	}
	if len(it.MAC) != 6 || it.MAC[0]&1 != 0 {
		return NIC{}, configErr("MAC", "%s: %v is not a unicast Ethernet address", it.Name, it.MAC)
	}
	nic.MAC = it.MAC.String()
	if err := vm.free(nic); err != nil {
		return NIC{}, err
	}
	found, err := vm.env.discover(ctx, want{names: []string{it.Name}, explicit: true}, vm.plan.Timeouts.Interfaces)
	if err != nil {
		return NIC{}, err
	}
	eth := found.data[0]
	nic.MTU = it.MTU
	if nic.MTU == 0 {
		nic.MTU = eth.Attrs().MTU
	}
	it.TAP, it.MTU = nic.TAP, nic.MTU
	ns := &nicState{NIC: nic}
	undo := func() {
		for i := len(ns.undo) - 1; i >= 0; i-- {
			if err := ns.undo[i](); err != nil {
				vm.log.Warn("undo an added NIC", "interface", it.Name, "err", err)
			}
		}
	}
	ns.rec, err = vm.stitchOne(nic.Index, it, eth, &ns.undo)
	if err != nil {
		undo()
		return NIC{}, err
	}
	err = mon.run(ctx, "netdev_add", map[string]any{"type": "tap", "id": nic.Netdev, "ifname": nic.TAP, "script": "no", "downscript": "no"}, nil)
	if err != nil {
		undo()
		return NIC{}, fmt.Errorf("interface %s: QMP: %w", it.Name, err)
	}
	dev, err := vm.deviceArgs(nic)
	if err == nil {
		err = mon.run(ctx, "device_add", dev, nil)
	}
	if err != nil {
		if derr := mon.run(context.WithoutCancel(ctx), "netdev_del", map[string]any{"id": nic.Netdev}, nil); derr != nil {
			vm.log.Warn("netdev_del after a failed device_add", "interface", it.Name, "err", derr)
		}
		undo()
		return NIC{}, fmt.Errorf("interface %s: QMP: %w", it.Name, err)
	}
	vm.mu.Lock()
	cleaned := vm.cleaned
	if !cleaned {
		vm.nics[it.Name] = ns
	}
	vm.mu.Unlock()
	if cleaned { // QEMU ended meanwhile
		undo()
		return NIC{}, fmt.Errorf("%w: QEMU ended while NIC %s was added", ErrBusy, it.Name)
	}
	vm.watchLinks()
	vm.log.Info("NIC added", "interface", it.Name, "tap", nic.TAP, "pci", nic.PCI, "mac", nic.MAC, "device", nic.Device)
	return nic, nil
}

// deviceArgs are device_add's arguments for nic: what -device gives a NIC
// at boot, as a map.
func (vm *VM) deviceArgs(nic NIC) (map[string]any, error) {
	at, err := vm.cfg.dataNIC(nic.Index)
	if err != nil {
		return nil, err
	}
	args := map[string]any{"driver": vm.cfg.NICModel}
	d := nicDevice{model: vm.cfg.NICModel, netdev: nic.Netdev, mac: nic.MAC, at: at, mtu: nic.MTU, id: nic.Device}
	for _, kv := range d.props() {
		args[kv[0]] = kv[1]
	}
	return args, nil
}

// free refuses a NIC whose interface, TAP, MAC or place the VM has.
func (vm *VM) free(nic NIC) error {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	for _, o := range vm.nics {
		switch {
		case o.Interface == nic.Interface:
			return configErr("Interfaces", "the VM already has a NIC behind %s (%s at %s)", nic.Interface, o.Device, o.PCI)
		case o.TAP == nic.TAP:
			return configErr("Interfaces", "%s: TAP %s is %s's", nic.Interface, nic.TAP, o.Interface)
		case strings.EqualFold(o.MAC, nic.MAC):
			return configErr("Interfaces", "%s: MAC %s is %s's", nic.Interface, nic.MAC, o.Interface)
		case o.PCI == nic.PCI:
			return configErr("Interfaces", "%s: PCI address %s holds %s's NIC", nic.Interface, nic.PCI, o.Interface)
		}
	}
	if nic.Interface == vm.cfg.Management.Interface {
		return configErr("Interfaces", "%s is the management interface", nic.Interface)
	}
	return nil
}

// RemoveNIC removes the data NIC behind container interface name from the
// running VM: QMP device_del, then it waits for the guest to release the
// NIC (the DEVICE_DELETED event; at most 10 s, ×4 under TCG — a guest that
// does not is an ErrNoHotplug error and the NIC stays), then netdev_del,
// and the stitch and TAP go. A NIC the VM does not have is an ErrNoNIC
// error. Boot NICs and added ones alike can be removed.
func (vm *VM) RemoveNIC(ctx context.Context, name string) error {
	vm.hot.Lock()
	defer vm.hot.Unlock()
	vm.mu.Lock()
	ns := vm.nics[name]
	vm.mu.Unlock()
	if ns == nil {
		return fmt.Errorf("%w: the VM has no NIC behind %s", ErrNoNIC, name)
	}
	mon, err := vm.monitor()
	if err != nil {
		return err
	}
	events, unsubscribe := mon.subscribe()
	defer unsubscribe()
	wait := true
	if err := mon.run(ctx, "device_del", map[string]any{"id": ns.Device}, nil); err != nil {
		switch {
		case strings.Contains(err.Error(), "not found"): // gone already
			wait = false
		case strings.Contains(err.Error(), "in the process of unplug"): // an earlier request still pending
		default:
			return fmt.Errorf("interface %s: QMP: %w", name, err)
		}
	}
	if wait {
		timeout := releaseTimeout
		if vm.plan.Accel == AccelTCG {
			timeout *= time.Duration(vm.plan.Timeouts.TCGFactor)
		}
		if err := awaitDeleted(ctx, events, ns.Device, timeout); err != nil {
			return fmt.Errorf("interface %s (device %s at %s): %w", name, ns.Device, ns.PCI, err)
		}
	}
	if err := mon.run(context.WithoutCancel(ctx), "netdev_del", map[string]any{"id": ns.Netdev}, nil); err != nil && !strings.Contains(err.Error(), "not found") {
		vm.log.Warn("netdev_del", "interface", name, "err", err)
	}
	var errs []error
	for i := len(ns.undo) - 1; i >= 0; i-- {
		if err := ns.undo[i](); err != nil {
			errs = append(errs, err)
		}
	}
	vm.mu.Lock()
	delete(vm.nics, name)
	vm.mu.Unlock()
	vm.log.Info("NIC removed", "interface", name, "pci", ns.PCI, "device", ns.Device)
	return errors.Join(errs...)
}

// awaitDeleted waits for the DEVICE_DELETED event of device id.
func awaitDeleted(ctx context.Context, events <-chan Event, id string, timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case ev := <-events:
			if ev.Event == "DEVICE_DELETED" && ev.Data["device"] == id {
				return nil
			}
		case <-t.C:
			return fmt.Errorf("%w: the guest did not release the NIC within %v (its kernel handles no ACPI PCI hot-plug: no acpiphp, or booted with pci=noacpi); QEMU removes it once the guest does",
				ErrNoHotplug, timeout)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// NICs returns the VM's data NICs, boot and added, in index order.
func (vm *VM) NICs() []NIC {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	out := make([]NIC, 0, len(vm.nics))
	for _, ns := range vm.nics {
		out = append(out, ns.NIC)
	}
	sortNICs(out)
	return out
}

// Interfaces returns the VM's data interfaces now, boot and added, in NIC
// order: what a restart of the VM in place starts it with.
func (vm *VM) Interfaces() []Interface {
	var out []Interface
	for _, n := range vm.NICs() {
		out = append(out, Interface{Name: n.Interface, TAP: n.TAP, MAC: mustMAC(n.MAC), MTU: n.MTU})
	}
	return out
}

// monitor is the VM's QMP connection, or ErrBusy when QEMU has ended.
func (vm *VM) monitor() (*monitor, error) {
	select {
	case <-vm.procDone:
		return nil, fmt.Errorf("%w: QEMU has ended", ErrBusy)
	default:
	}
	vm.mu.Lock()
	defer vm.mu.Unlock()
	if vm.mon == nil {
		return nil, fmt.Errorf("%w: no QMP connection", ErrBusy)
	}
	return vm.mon, nil
}
