package qemulaunch

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
)

// placeNIC is where data NIC n goes: PCI slot 2+n of the root bus,
// function 0, named ethN by the guest's kernel.
func (c Config) placeNIC(n int) (NIC, error) {
	slot := 2 + n
	if n < 1 || n > maxDataNICs {
		return NIC{}, fmt.Errorf("%w: data NIC %d: slots 3-%d take data NICs 1-%d", ErrNoHotplug, n, 2+maxDataNICs, maxDataNICs)
	}
	return NIC{Index: n, PCI: fmt.Sprintf("%02x.0", slot), Slot: slot, GuestName: "eth" + strconv.Itoa(n)}, nil
}

// nicProps are the -device properties of a data NIC after its model, as
// device_add takes them too.
func nicProps(model string, nic NIC) [][2]string {
	p := [][2]string{{"netdev", nic.Netdev}, {"mac", nic.MAC}, {"addr", fmt.Sprintf("0x%x", nic.Slot)}}
	if nic.MTU > 0 && strings.HasPrefix(model, "virtio-net") {
		p = append(p, [2]string{"host_mtu", strconv.Itoa(nic.MTU)})
	}
	return p
}

// sortNICs orders NICs by data index.
func sortNICs(nics []NIC) {
	sort.Slice(nics, func(i, j int) bool { return nics[i].Index < nics[j].Index })
}

// mustMAC parses a MAC this package rendered.
func mustMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}
