package wiring

import (
	"context"
	"fmt"
	"log"
	"os/exec"
)

// Wire a lesson between plain namespaces, run a program in one endpoint,
// and tear it all down. Needs root, so it has no checked output.
func ExampleLocal() {
	ctx := context.Background()
	p, err := NewPlan(triangle(), Options{Instance: "lab1"})
	if err != nil {
		log.Fatal(err)
	}
	l := &Local{AssignLinkAddresses: true} // plain namespaces: addresses on ethN
	st, err := l.Apply(ctx, p)
	if err != nil {
		// The state file records what was made: tear it down anyway.
		l.Teardown(ctx, l.StateDir(p.Instance))
		log.Fatal(err)
	}
	defer l.Teardown(ctx, st.Dir)

	e, _ := st.Endpoint("foobar1")
	fmt.Println(e.Namespace, e.MgmtAddress)
	cmd := exec.Command("ping", "-c", "1", "10.12.0.3") // foobar2.eth1
	if err := st.Start("foobar1", cmd); err != nil {
		log.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		log.Fatal(err)
	}
}
