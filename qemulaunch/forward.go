package qemulaunch

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// ErrPortInUse is returned when a forwarded host port is already bound.
var ErrPortInUse = errors.New("qemulaunch: port already in use")

// resolveForwards picks free ports for AutoPort, defaults HostPort to the
// guest port, and checks that each host port can be bound on addr inside
// the namespace (QEMU's own message for this is vague and comes late).
func (e *netEnv) resolveForwards(addr netip.Addr, fs []Forward) ([]Forward, error) {
	out := make([]Forward, 0, len(fs))
	host := "0.0.0.0"
	if addr.IsValid() {
		host = addr.String()
	}
	for _, f := range fs {
		f.Proto = f.proto()
		if f.HostPort == 0 {
			f.HostPort = f.GuestPort
		}
		port := f.HostPort
		if port == AutoPort {
			port = 0
		}
		var got int
		err := e.do(func() error {
			var err error
			got, err = bindProbe(f.Proto, net.JoinHostPort(host, strconv.Itoa(port)))
			return err
		})
		if err != nil {
			if errors.Is(err, unix.EADDRINUSE) {
				return nil, fmt.Errorf("%w: forward %s/%d: %s:%d is taken by another program; stop it or forward to another host port",
					ErrPortInUse, f.Proto, f.GuestPort, host, port)
			}
			if errors.Is(err, unix.EADDRNOTAVAIL) {
				return nil, fmt.Errorf("forward %s/%d: address %s is not on any interface of this namespace", f.Proto, f.GuestPort, host)
			}
			return nil, fmt.Errorf("forward %s/%d: %w", f.Proto, f.GuestPort, err)
		}
		f.HostPort = got
		out = append(out, f)
	}
	return out, nil
}

// bindProbe binds and releases addr, returning the port bound.
func bindProbe(proto, addr string) (int, error) {
	switch proto {
	case "udp":
		c, err := net.ListenPacket("udp4", addr)
		if err != nil {
			return 0, err
		}
		defer c.Close()
		return c.LocalAddr().(*net.UDPAddr).Port, nil
	default:
		l, err := net.Listen("tcp4", addr)
		if err != nil {
			return 0, err
		}
		defer l.Close()
		return l.Addr().(*net.TCPAddr).Port, nil
	}
}

// ParsePorts parses a comma-separated port list such as "22,830,161/udp"
// into forwards (host port = guest port). An optional HOST:GUEST form maps a
// different host port.
func ParsePorts(s string) ([]Forward, error) {
	var out []Forward
	for i, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		f := Forward{Proto: "tcp"}
		if p, proto, ok := strings.Cut(part, "/"); ok {
			part, f.Proto = p, proto
			if proto != "tcp" && proto != "udp" {
				return nil, fmt.Errorf("ports: item %d %q: protocol must be tcp or udp", i+1, part+"/"+proto)
			}
		}
		hostS, guestS, mapped := strings.Cut(part, ":")
		if !mapped {
			guestS = hostS
		}
		guest, err := parsePort(guestS)
		if err != nil {
			return nil, fmt.Errorf("ports: item %d %q: %v", i+1, part, err)
		}
		f.GuestPort, f.HostPort = guest, guest
		if mapped {
			if f.HostPort, err = parsePort(hostS); err != nil {
				return nil, fmt.Errorf("ports: item %d %q: %v", i+1, part, err)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

// FormatPorts writes forwards in the syntax ParsePorts reads: GUEST, or
// HOST:GUEST when the host port differs, with /udp for UDP. A host port of
// 0 or AutoPort is written as the guest port.
func FormatPorts(fs []Forward) string {
	parts := make([]string, len(fs))
	for i, f := range fs {
		s := strconv.Itoa(f.GuestPort)
		if f.HostPort > 0 && f.HostPort != f.GuestPort {
			s = strconv.Itoa(f.HostPort) + ":" + s
		}
		if f.proto() == "udp" {
			s += "/udp"
		}
		parts[i] = s
	}
	return strings.Join(parts, ",")
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 65535 {
		return 0, fmt.Errorf("%q is not a port number (1-65535)", s)
	}
	return n, nil
}
