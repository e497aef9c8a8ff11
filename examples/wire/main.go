// Command wire cables two network namespaces together with package wiring:
// an endpoint model written by hand (two endpoints, one link with a
// subnet), its plan, the namespaces and the veth pair built from it, a ping
// across the link from inside one namespace, and the teardown. Needs root.
//
//	go run ./examples/wire [INSTANCE]
package main

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/wiring"
)

func main() {
	instance := "wire-example"
	if len(os.Args) > 1 {
		instance = os.Args[1]
	}
	if err := run(context.Background(), instance, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "wire:", err)
		os.Exit(1)
	}
}

// twoEndpoints is a lesson model with a and b on one /24.
func twoEndpoints() *endpoint.Model {
	subnet := netip.MustParsePrefix("10.99.0.0/24")
	ep := func(name, peer, addr string, index int) endpoint.Endpoint {
		return endpoint.Endpoint{Name: name, Index: index, Interfaces: []endpoint.Interface{{
			Name: "eth1", GuestName: "eth1", MTU: 1500, Link: 0, Peer: peer, PeerInterface: "eth1",
			Address: netip.MustParsePrefix(addr)}}}
	}
	return &endpoint.Model{Lesson: "wire-example",
		Endpoints: []endpoint.Endpoint{ep("a", "b", "10.99.0.2/24", 0), ep("b", "a", "10.99.0.3/24", 1)},
		Links: []endpoint.Link{{Index: 0, A: endpoint.LinkEnd{Endpoint: "a", Interface: "eth1"},
			B: endpoint.LinkEnd{Endpoint: "b", Interface: "eth1"}, Subnet: subnet, Explicit: true, MTU: 1500}}}
}

// run wires the model as instance, pings b from a, and tears it down.
func run(ctx context.Context, instance string, w io.Writer) error {
	plan, err := wiring.NewPlan(twoEndpoints(), wiring.Options{Instance: instance})
	if err != nil {
		return err
	}
	fmt.Fprint(w, plan) // pure data: nothing exists yet
	// Plain namespaces (no VM owns eth1): the addresses go on the interfaces.
	local := &wiring.Local{AssignLinkAddresses: true}
	st, err := local.Apply(ctx, plan)
	// Teardown works from the state file alone, also after a failed Apply.
	defer local.Teardown(context.WithoutCancel(ctx), local.StateDir(instance))
	if err != nil {
		return err
	}
	a, _ := st.Endpoint("a")
	fmt.Fprintf(w, "a lives in namespace %s (management %s)\n", a.Namespace, a.MgmtAddress)
	ping := exec.CommandContext(ctx, "ping", "-c", "2", "-W", "2", "10.99.0.3")
	ping.Stdout, ping.Stderr = w, w
	if err := st.Start("a", ping); err != nil { // runs inside a's namespace
		return err
	}
	return ping.Wait()
}
