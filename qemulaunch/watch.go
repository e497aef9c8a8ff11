package qemulaunch

import (
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// stitchRec is one live stitch: enough to redo it when ethN is recreated.
type stitchRec struct {
	it  Interface
	st  stitcher
	eth netlink.Link // current ethN (its ifindex is what the stitch uses)
	tap netlink.Link
}

// watchLinks follows netlink link events for the VM's lifetime (once
// started, by Start for the boot's data NICs or by the first AddNIC). When
// a stitched container interface disappears (its veth peer was deleted)
// the TAP is left as it is and a warning logged; when an interface of that
// name appears again with a new ifindex — a re-created link — the stitch
// is redone, since tc filters and bridge ports are bound to the old
// ifindex. It follows the VM's NICs as they are at each event, so NICs
// added later are re-stitched too, and removed ones no longer.
func (vm *VM) watchLinks() {
	vm.mu.Lock()
	if vm.watching {
		vm.mu.Unlock()
		return
	}
	vm.watching = true
	vm.mu.Unlock()
	updates := make(chan netlink.LinkUpdate, 64)
	done := make(chan struct{})
	ns := vm.env.ns
	if err := netlink.LinkSubscribeWithOptions(updates, done, netlink.LinkSubscribeOptions{Namespace: &ns}); err != nil {
		vm.log.Warn("cannot watch container interfaces; a re-created link will not be re-stitched", "err", err)
		return
	}
	go func() {
		<-vm.procDone
		close(done)
	}()
	go func() {
		for u := range updates {
			name := u.Link.Attrs().Name
			vm.mu.Lock()
			var r *stitchRec
			if n := vm.nics[name]; n != nil {
				r = n.rec
			}
			var cur netlink.Link
			if r != nil {
				cur = r.eth
			}
			vm.mu.Unlock()
			switch {
			case r == nil:
			case u.Header.Type == unix.RTM_DELLINK && u.Link.Attrs().Index == cur.Attrs().Index:
				vm.log.Warn("container interface vanished; its VM NIC is cut off until it returns", "interface", name)
			case u.Header.Type == unix.RTM_NEWLINK && u.Link.Attrs().Index != cur.Attrs().Index:
				vm.restitch(r, u.Link)
			}
		}
	}()
}

func (vm *VM) restitch(r *stitchRec, eth netlink.Link) {
	select {
	case <-vm.procDone:
		return
	default:
	}
	if err := vm.env.disableTXChecksum(r.it.Name); err != nil {
		vm.log.Warn("could not disable TX checksum offload", "interface", r.it.Name, "err", err)
	}
	if err := r.st.stitch(vm.env, eth, r.tap); err != nil {
		vm.log.Error("re-stitching a re-created interface failed", "interface", r.it.Name, "err", err)
		return
	}
	vm.mu.Lock()
	r.eth = eth
	vm.mu.Unlock()
	vm.log.Info("re-stitched re-created interface", "interface", r.it.Name, "ifindex", eth.Attrs().Index)
}
