package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"

	"github.com/endpointkit/endpointkit/qemulaunch"
)

// runNIC asks the running launcher of a state directory to add or remove a
// data NIC (qemulaunch.AddNIC, RemoveNIC): `endpoint nic add --interface
// eth3 --mac 02:… [--mtu N]` prints the NIC as JSON; `endpoint nic del
// --interface eth3`. In a container, a runtime runs it with exec.
func runNIC(ctx context.Context, args []string, _ io.Reader, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "add" && args[0] != "del") {
		fmt.Fprintln(stderr, "usage: endpoint nic add|del --interface ethN [--mac MAC] [--mtu N] [--name NAME | --state DIR]")
		return fmt.Errorf("%w: nic add or nic del", qemulaunch.ErrUsage)
	}
	fs := flag.NewFlagSet("nic "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", os.Getenv("ENDPOINT_NAME"), "instance name (state dir /run/endpointkit/NAME) ($ENDPOINT_NAME)")
	state := fs.String("state", os.Getenv("ENDPOINT_STATE"), "state directory ($ENDPOINT_STATE)")
	iface := fs.String("interface", "", "the container interface behind the NIC (ethN); required")
	mac := fs.String("mac", "", "the guest NIC's MAC (add; required)")
	mtu := fs.Int("mtu", 0, "the TAP's MTU (add; default the interface's)")
	if err := fs.Parse(args[1:]); err != nil {
		return fmt.Errorf("%w: %v", qemulaunch.ErrUsage, err)
	}
	if *iface == "" || fs.NArg() > 0 {
		return fmt.Errorf("%w: nic %s needs --interface and takes no arguments", qemulaunch.ErrUsage, args[0])
	}
	dir, err := qemulaunch.StateDirOf(*state, *name)
	if err != nil {
		return err
	}
	if args[0] == "del" {
		return qemulaunch.RemoveNIC(ctx, dir, *iface)
	}
	hw, err := net.ParseMAC(*mac)
	if err != nil {
		return fmt.Errorf("%w: --mac %q: %v", qemulaunch.ErrUsage, *mac, err)
	}
	nic, err := qemulaunch.AddNIC(ctx, dir, qemulaunch.Interface{Name: *iface, MAC: hw, MTU: *mtu})
	if err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(nic)
}
