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

// FromEndpoint is the launcher config for one endpoint of the lesson model:
// its name, exactly its declared ports, its management MAC and its data
// interfaces (names, MACs, MTUs) in model order. The lesson directory,
// state dir and accelerator are left for the caller.
func FromEndpoint(ep endpoint.Endpoint, im *vmimage.Image) Config {
	c := Config{Name: ep.Name, Image: im, Management: Management{MAC: ep.ManagementMAC}}
	for _, p := range ep.Ports {
		c.Forwards = append(c.Forwards, Forward{GuestPort: p})
	}
	for _, it := range ep.Interfaces {
		c.Interfaces = append(c.Interfaces, Interface{Name: it.Name, MAC: it.MAC, MTU: it.MTU})
	}
	return c
}

// ParseMACs reads "eth0=02:00:00:00:00:01,eth1=…" (the --macs syntax) and
// applies it: eth0 (or the management interface's name) sets the
// management MAC, others add or update data interfaces by name.
func (c *Config) ParseMACs(s string) error {
	mgmt := c.Management.Interface
	if mgmt == "" {
		mgmt = "eth0"
	}
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, macS, ok := strings.Cut(part, "=")
		mac, err := net.ParseMAC(macS)
		if !ok || name == "" || err != nil || len(mac) != 6 || mac[0]&1 != 0 {
			return fmt.Errorf("macs: item %d %q: want IFACE=MAC with a unicast Ethernet MAC", i+1, part)
		}
		if name == mgmt {
			c.Management.MAC = mac
			continue
		}
		found := false
		for j := range c.Interfaces {
			if c.Interfaces[j].Name == name {
				c.Interfaces[j].MAC, found = mac, true
			}
		}
		if !found {
			c.Interfaces = append(c.Interfaces, Interface{Name: name, MAC: mac})
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
	return nil
}
