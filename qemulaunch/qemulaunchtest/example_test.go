package qemulaunchtest_test

import (
	"context"
	"testing"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// A launcher test: a container-like namespace with eth0 and two data
// interfaces, a VM started in it, a login over SSH from the test's side,
// and a check that the launcher left nothing behind. (The helpers take the
// test's *testing.T, so this example only compiles.)
func ExampleNewContainer() {
	testVM := func(t *testing.T, im *vmimage.Image) {
		c := qemulaunchtest.NewContainer(t, 2) // removed when the test ends
		vm, err := qemulaunch.Start(context.Background(), qemulaunch.Config{
			Name: "r1", Image: im, NetNS: c.NS, Accel: qemulaunch.AccelTCG, StateDir: t.TempDir(),
			Forwards: []qemulaunch.Forward{{GuestPort: 22}}, DataInterfaces: 2,
		})
		if err != nil {
			t.Fatal(err)
		}
		if err := vm.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		out := qemulaunchtest.SSH(t, "", c.Eth0Addr.String()+":22", "antidote", "antidotepassword", "ip link", nil)
		t.Log(out)
		vm.Stop(context.Background())
		qemulaunchtest.AssertClean(t, c.NS)
	}
	_ = testVM
}
