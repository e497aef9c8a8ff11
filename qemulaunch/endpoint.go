package qemulaunch

import (
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
)

// FromEndpoint is the launcher config for one endpoint of the lesson model,
// in-process: what [LaunchFor] says (name, the ports [ExposedPorts]
// decides, management and data-interface MACs) plus each data interface's
// MTU, in model order. The lesson directory, state dir and accelerator are
// left for the caller.
func FromEndpoint(ep endpoint.Endpoint, im *vmimage.Image) Config {
	c := LaunchFor(ep, im).config(im)
	for k := range c.Interfaces {
		for _, it := range ep.Interfaces {
			if it.Name == c.Interfaces[k].Name {
				c.Interfaces[k].MTU = it.MTU
			}
		}
	}
	return c
}

// ParseMACs reads "eth0=02:00:00:00:00:01,eth1=…" (the --macs syntax) and
// applies it: eth0 (or the management interface's name) sets the
// management MAC, others add or update data interfaces by name.
func (c *Config) ParseMACs(s string) error {
	macs, err := parseMACs(s)
	if err != nil {
		return err
	}
	c.applyMACs(macs)
	return nil
}

// parseMACs reads the --macs syntax.
func parseMACs(s string) ([]InterfaceMAC, error) {
	var out []InterfaceMAC
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, macS, ok := strings.Cut(part, "=")
		mac, err := net.ParseMAC(macS)
		if !ok || name == "" || err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return nil, fmt.Errorf("macs: item %d %q: want IFACE=MAC with a unicast Ethernet MAC", i+1, part)
		}
		out = append(out, InterfaceMAC{name, mac})
	}
	return out, nil
}

// applyMACs sets the management MAC (eth0, or the management interface's
// name) and adds or updates data interfaces by name, in ethN order.
func (c *Config) applyMACs(macs []InterfaceMAC) {
	if len(macs) == 0 {
		return
	}
	mgmt := c.Management.Interface
	if mgmt == "" {
		mgmt = "eth0"
	}
	for _, m := range macs {
		if m.Interface == mgmt {
			c.Management.MAC = m.MAC
			continue
		}
		found := false
		for j := range c.Interfaces {
			if c.Interfaces[j].Name == m.Interface {
				c.Interfaces[j].MAC, found = m.MAC, true
			}
		}
		if !found {
			c.Interfaces = append(c.Interfaces, Interface{Name: m.Interface, MAC: m.MAC})
		}
	}
	// NIC order is ethN order whatever order the list was written in.
	num := func(n string) int {
		v, err := strconv.Atoi(strings.TrimPrefix(n, "eth"))
		if err != nil || !strings.HasPrefix(n, "eth") {
			return 1 << 30
		}
		return v
	}
	sort.SliceStable(c.Interfaces, func(i, j int) bool { return num(c.Interfaces[i].Name) < num(c.Interfaces[j].Name) })
}
