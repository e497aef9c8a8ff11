package qemulaunch

import (
	"net"
	"sort"
)

// sortNICs orders NICs by data index.
func sortNICs(nics []NIC) {
	sort.Slice(nics, func(i, j int) bool { return nics[i].Index < nics[j].Index })
}

// mustMAC parses a MAC this package rendered.
func mustMAC(s string) net.HardwareAddr {
	m, _ := net.ParseMAC(s)
	return m
}
