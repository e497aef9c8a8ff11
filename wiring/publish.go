package wiring

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Published ports are DNAT rules in an nftables table of the instance's own
// (family ip, named ek-<instance>) in the host namespace:
//
//	chain prerouting { type nat hook prerouting priority dstnat; … }
//	chain output     { type nat hook output priority -100; … }
//	  fib daddr type local ip daddr != 127.0.0.0/8 tcp dport HOSTPORT dnat to MGMT:PORT
//
// so a connection to any of the host's own addresses (not loopback: that
// would need route_localnet) on the host port reaches the endpoint, from the
// host itself (output) and from outside (prerouting; the host must forward,
// net.ipv4.ip_forward=1). Deleting the table removes every rule at once.

func nftConn(host netns.NsHandle) (*nftables.Conn, error) {
	c, err := nftables.New(nftables.WithNetNSFd(int(host)))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	return c, nil
}

// nftTableExists reports whether the ip-family table exists.
func nftTableExists(c *nftables.Conn, name string) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == name {
			return true, nil
		}
	}
	return false, nil
}

// publishRules replaces the table with one holding a rule per port, in one
// nftables transaction.
func publishRules(host netns.NsHandle, table string, ports []PublishedPort) error {
	c, err := nftConn(host)
	if err != nil {
		return err
	}
	exists, err := nftTableExists(c, table)
	if err != nil {
		return err
	}
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyIPv4}
	if exists {
		c.DelTable(t)
	}
	c.AddTable(t)
	pre := c.AddChain(&nftables.Chain{Name: "prerouting", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityNATDest})
	out := c.AddChain(&nftables.Chain{Name: "output", Table: t, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityNATDest})
	for _, p := range ports {
		for _, ch := range []*nftables.Chain{pre, out} {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: dnatExprs(p)})
		}
	}
	if err := c.Flush(); err != nil {
		return fmt.Errorf("nftables: table %s: %w", table, err)
	}
	return nil
}

func dnatExprs(p PublishedPort) []expr.Any {
	proto := byte(unix.IPPROTO_TCP)
	if p.Proto == "udp" {
		proto = unix.IPPROTO_UDP
	}
	target := p.Target.Addr().As4()
	return []expr.Any{
		// fib daddr type local
		&expr.Fib{Register: 1, FlagDADDR: true, ResultADDRTYPE: true},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)},
		// ip daddr != 127.0.0.0/8
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: []byte{255, 0, 0, 0}, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{127, 0, 0, 0}},
		// meta l4proto P th dport HOSTPORT
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{proto}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binaryutil.BigEndian.PutUint16(uint16(p.HostPort))},
		// dnat to TARGET:PORT
		&expr.Immediate{Register: 1, Data: target[:]},
		&expr.Immediate{Register: 2, Data: binaryutil.BigEndian.PutUint16(uint16(p.Port))},
		&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 2, Specified: true},
	}
}

// deleteTable removes the table if it exists.
func deleteTable(host netns.NsHandle, table string) error {
	c, err := nftConn(host)
	if err != nil {
		return err
	}
	exists, err := nftTableExists(c, table)
	if err != nil || !exists {
		return err
	}
	c.DelTable(&nftables.Table{Name: table, Family: nftables.TableFamilyIPv4})
	if err := c.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nftables: delete table %s: %w", table, err)
	}
	return nil
}

// freePort asks the kernel for an unused port of proto in the calling
// thread's namespace. Another program may take it before the rule is used;
// name a HostPort to avoid that.
func freePort(proto string) (int, error) {
	switch proto {
	case "udp":
		c, err := net.ListenPacket("udp4", ":0")
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp4", ":0")
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// mgmtAddr is the management address of the endpoint at pos.
func mgmtAddr(subnet netip.Prefix, pos int) netip.Prefix {
	a := subnet.Masked().Addr()
	for range pos + 2 {
		a = a.Next()
	}
	return netip.PrefixFrom(a, subnet.Bits())
}

// publish installs the DNAT rules for this host's published ports. Ports
// chosen at an earlier Apply are kept.
func (a *applier) publish(context.Context) error {
	if len(a.p.Publish) == 0 {
		return nil
	}
	var ports []PublishedPort
	for _, pb := range a.p.Publish {
		ep := a.p.endpoint(pb.Endpoint)
		if ep.Host != a.l.Host {
			continue
		}
		pp := PublishedPort{Endpoint: pb.Endpoint, Proto: pb.Proto, Port: pb.Port, HostPort: pb.HostPort,
			Target: netip.AddrPortFrom(mgmtAddr(a.st.MgmtSubnet, ep.Pos).Addr(), uint16(pb.Port))}
		for _, old := range a.st.Published {
			if pp.HostPort == 0 && old.Endpoint == pp.Endpoint && old.Proto == pp.Proto && old.Port == pp.Port {
				pp.HostPort = old.HostPort
			}
		}
		if pp.HostPort == 0 {
			err := nsutil.DoHandle(a.host.fd, func() error {
				var err error
				pp.HostPort, err = freePort(pp.Proto)
				return err
			})
			if err != nil {
				return &EndpointError{Endpoint: ep.Name, Namespace: ep.Namespace, Err: fmt.Errorf("publish %s/%d: free host port: %w", pp.Proto, pp.Port, err)}
			}
		}
		ports = append(ports, pp)
	}
	a.st.Published = ports
	if err := a.st.save(); err != nil {
		return err
	}
	if err := publishRules(a.host.fd, a.p.NFTable, ports); err != nil {
		return fmt.Errorf("wiring: instance %s: publish: %w", a.p.Instance, err)
	}
	return nil
}
