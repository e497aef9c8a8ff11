package agent

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"
	"github.com/vishvananda/netlink"
)

// DHCPStateDir holds one file per DHCP interface, dhcp.IFACE, with the
// lease as key=value lines (interface, ip, mask, router, dns, lease,
// serverid).
const DHCPStateDir = "/run/endpointkit"

// dhcpClient runs DHCPv4 on one interface in-process (nclient4 on a packet
// socket, configuration over netlink): no udhcpc, shell script and ip
// processes to start, which under TCG cost a quarter of a second of boot.
type dhcpClient struct {
	ifc      string
	hostname string
	log      *slog.Logger
	// attempt is how long the first exchange waits for each answer; later
	// ones wait longer.
	attempt time.Duration
	// resolvConf and stateDir are where a lease is written (default
	// /etc/resolv.conf and DHCPStateDir).
	resolvConf, stateDir string
}

func (d *dhcpClient) modifiers() []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter,
		dhcpv4.OptionDomainNameServer, dhcpv4.OptionDomainName, dhcpv4.OptionDNSDomainSearchList)}
	if d.hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(d.hostname)))
	}
	return mods
}

// acquire obtains a lease, retrying with a doubling attempt timeout (up
// to 8 s) until ctx ends.
func (d *dhcpClient) acquire(ctx context.Context) (*nclient4.Lease, error) {
	wait := d.attempt
	for {
		start := time.Now()
		lease, err := d.exchange(ctx, nil, wait)
		if err == nil {
			return lease, nil
		}
		d.log.Debug("dhcp attempt failed", "iface", d.ifc, "err", err)
		// A fast failure (a NAK, the interface not there yet) must not spin.
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dhcp %s: %w (last error: %v)", d.ifc, ctx.Err(), err)
		case <-time.After(wait - time.Since(start)):
		}
		wait = min(2*wait, 8*time.Second)
	}
}

// exchange runs DISCOVER/OFFER/REQUEST/ACK, or a renewing REQUEST when old
// is set, each message waiting up to timeout for its answer, on a socket
// open only for this exchange (the packet socket sees every IPv4 packet of
// the interface, so it must not stay open).
func (d *dhcpClient) exchange(ctx context.Context, old *nclient4.Lease, timeout time.Duration) (*nclient4.Lease, error) {
	c, err := nclient4.New(d.ifc, nclient4.WithTimeout(timeout), nclient4.WithRetry(1))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if old != nil {
		return c.Renew(ctx, old, d.modifiers()...)
	}
	return c.Request(ctx, d.modifiers()...)
}

// run obtains a lease, applies it, closes bound, then renews the lease at
// its renewal time (T1) until ctx ends, starting over when it expires.
func (d *dhcpClient) run(ctx context.Context, bound chan<- struct{}) {
	for ctx.Err() == nil {
		lease, err := d.acquire(ctx)
		if err != nil {
			return
		}
		for lease != nil {
			if err := d.apply(lease.ACK); err != nil {
				d.log.Warn("dhcp: apply lease", "iface", d.ifc, "err", err)
			}
			if bound != nil {
				close(bound)
				bound = nil
			}
			last := lease
			if lease = d.renew(ctx, lease); lease == nil && ctx.Err() == nil {
				d.unapply(last.ACK)
			}
		}
	}
}

// renew waits for T1 and renews the lease, retrying at half the remaining
// time; it returns the renewed lease, or nil when the lease expired (or ctx
// ended).
func (d *dhcpClient) renew(ctx context.Context, lease *nclient4.Lease) *nclient4.Lease {
	leaseTime := lease.ACK.IPAddressLeaseTime(24 * time.Hour)
	expiry := lease.CreationTime.Add(leaseTime)
	next := lease.CreationTime.Add(lease.ACK.IPAddressRenewalTime(leaseTime / 2))
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Until(next)):
		}
		if time.Now().After(expiry) {
			d.log.Warn("dhcp lease expired", "iface", d.ifc)
			return nil
		}
		renewed, err := d.exchange(ctx, lease, 4*d.attempt)
		if err == nil {
			return renewed
		}
		d.log.Warn("dhcp renew failed", "iface", d.ifc, "err", err)
		next = time.Now().Add(max(time.Until(expiry)/2, 10*time.Second))
	}
}

// apply configures the interface from an ACK: address, default route (or
// classless static routes), /etc/resolv.conf and the state file.
func (d *dhcpClient) apply(ack *dhcpv4.DHCPv4) error {
	link, err := netlink.LinkByName(d.ifc)
	if err != nil {
		return err
	}
	addr := leaseAddr(ack)
	if err := netlink.AddrReplace(link, &netlink.Addr{IPNet: addr}); err != nil {
		return fmt.Errorf("address %s: %w", addr, err)
	}
	if routes := ack.ClasslessStaticRoute(); routes != nil { // RFC 3442: they replace the router option
		for _, r := range routes {
			rt := &netlink.Route{LinkIndex: link.Attrs().Index, Dst: r.Dest, Gw: r.Router}
			if r.Router == nil || r.Router.IsUnspecified() {
				rt.Gw, rt.Scope = nil, netlink.SCOPE_LINK
			}
			if err := netlink.RouteReplace(rt); err != nil {
				return fmt.Errorf("route %s: %w", r.Dest, err)
			}
		}
	} else if gw := ack.Router(); len(gw) > 0 {
		if err := netlink.RouteReplace(&netlink.Route{LinkIndex: link.Attrs().Index, Gw: gw[0]}); err != nil {
			return fmt.Errorf("default route via %s: %w", gw[0], err)
		}
	}
	var resolv strings.Builder
	if dom := ack.DomainName(); dom != "" {
		fmt.Fprintf(&resolv, "search %s\n", dom)
	}
	for _, ns := range ack.DNS() {
		fmt.Fprintf(&resolv, "nameserver %s\n", ns)
	}
	if err := os.WriteFile(cmp.Or(d.resolvConf, "/etc/resolv.conf"), []byte(resolv.String()), 0o644); err != nil {
		return err
	}
	return writeLeaseFile(d.leaseFile(), d.ifc, ack)
}

// unapply removes an expired lease's address (and with it its routes).
func (d *dhcpClient) unapply(ack *dhcpv4.DHCPv4) {
	link, err := netlink.LinkByName(d.ifc)
	if err == nil {
		err = netlink.AddrDel(link, &netlink.Addr{IPNet: leaseAddr(ack)})
	}
	if err != nil {
		d.log.Warn("dhcp: remove expired address", "iface", d.ifc, "err", err)
	}
	os.Remove(d.leaseFile())
}

// leaseAddr is the address and prefix an ACK assigns (the address class's
// mask when the server sends none).
func leaseAddr(ack *dhcpv4.DHCPv4) *net.IPNet {
	mask := ack.SubnetMask()
	if mask == nil {
		mask = ack.YourIPAddr.DefaultMask()
	}
	return &net.IPNet{IP: ack.YourIPAddr, Mask: mask}
}

func (d *dhcpClient) leaseFile() string {
	return filepath.Join(cmp.Or(d.stateDir, DHCPStateDir), "dhcp."+d.ifc)
}

// writeLeaseFile records a lease in path.
func writeLeaseFile(path, ifc string, ack *dhcpv4.DHCPv4) error {
	ones, _ := leaseAddr(ack).Mask.Size()
	join := func(ips []net.IP) string {
		s := make([]string, len(ips))
		for i, ip := range ips {
			s[i] = ip.String()
		}
		return strings.Join(s, " ")
	}
	state := fmt.Sprintf("interface=%s\nip=%s\nmask=%d\nrouter=%s\ndns=%s\nlease=%d\nserverid=%s\n",
		ifc, ack.YourIPAddr, ones, join(ack.Router()), join(ack.DNS()),
		int(ack.IPAddressLeaseTime(0).Seconds()), ack.ServerIdentifier())
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	return os.WriteFile(path, []byte(state), 0o644)
}
