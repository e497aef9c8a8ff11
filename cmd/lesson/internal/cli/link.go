package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"
	"strings"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/lessonjson"
)

func linkCommand() *Command {
	return &Command{
		Name:    "link",
		Args:    "[--instance NAME] add ENDPOINT ENDPOINT [--subnet CIDR] | del ENDPOINT:INTERFACE",
		Summary: "add a link to a running lesson, or remove one",
		Help: `
Changes the links of a running lesson instance without stopping it.

  link add A B [--subnet CIDR]   cables a new link between endpoints A and B:
                                 each gets the lowest free ethN, and its VM a
                                 NIC hot-plugged behind it, brought up in the
                                 guest; with a subnet, the endpoint listed
                                 first in the lesson gets its .2, the other .3.
                                 Prints the interface made on each side.
  link del A:IFACE               removes the link A's interface IFACE is on (an
                                 added link or one of the lesson's), on both
                                 sides.

The instance's state records the change, so status, a restart of an
endpoint and down know it. A link that cannot be added (an unknown endpoint,
a guest or machine type without NIC hot-plug) is refused before anything
changes; one that fails half-way is undone.`,
		Operand: OperandLink,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			subnet := fs.String("subnet", "", "the new link's IPv4 subnet (`CIDR`, at most /30); the guests get its .2 and .3")
			asJSON := fs.Bool("json", false, "print one JSON document (version 1) to stdout")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return fmt.Errorf("%w: give add ENDPOINT ENDPOINT, or del ENDPOINT:INTERFACE", ErrUsage)
				}
				switch args[0] {
				case "add":
					if len(args) != 3 {
						return fmt.Errorf("%w: link add takes two endpoints", ErrUsage)
					}
					var p netip.Prefix
					if *subnet != "" {
						var err error
						if p, err = netip.ParsePrefix(*subnet); err != nil {
							return fmt.Errorf("%w: --subnet %q: %v", ErrUsage, *subnet, err)
						}
					}
					return runLinkAdd(ctx, env, inf, args[1], args[2], p, *asJSON)
				case "del":
					if *subnet != "" {
						return fmt.Errorf("%w: --subnet is for link add", ErrUsage)
					}
					ep, iface, ok := strings.Cut(strings.Join(args[1:], " "), ":")
					if len(args) != 2 || !ok || ep == "" || iface == "" {
						return fmt.Errorf("%w: link del takes one ENDPOINT:INTERFACE, e.g. r1:eth3", ErrUsage)
					}
					return runLinkDel(ctx, env, inf, ep, iface, *asJSON)
				}
				return fmt.Errorf("%w: link %q: use add or del", ErrUsage, args[0])
			}
		},
	}
}

func runLinkAdd(ctx context.Context, env *Env, inf *instanceFlags, a, b string, subnet netip.Prefix, asJSON bool) error {
	inst, err := inf.open(env)
	if err != nil {
		return err
	}
	l, err := inst.AddLink(ctx, a, b, subnet)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, lessonjson.LinkChange{Version: lessonjson.Version, Instance: inst.Name, Added: &l})
	}
	for _, e := range []endpointkit.AddedEnd{l.A, l.B} {
		addr := "no address"
		if e.Address.IsValid() {
			addr = e.Address.String()
		}
		fmt.Fprintf(env.Stdout, "%s: %s (guest %s, PCI %s, MAC %s) %s\n", e.Endpoint, e.Interface, e.GuestName, e.PCI, e.MAC, addr)
	}
	return nil
}

func runLinkDel(ctx context.Context, env *Env, inf *instanceFlags, ep, iface string, asJSON bool) error {
	inst, err := inf.open(env)
	if err != nil {
		return err
	}
	ends, err := inst.RemoveLink(ctx, ep, iface)
	if err != nil {
		return err
	}
	if asJSON {
		return writeJSON(env.Stdout, lessonjson.LinkChange{Version: lessonjson.Version, Instance: inst.Name, Removed: ends[:]})
	}
	fmt.Fprintf(env.Stdout, "removed %s ↔ %s\n", ends[0], ends[1])
	return nil
}
