package endpointkit

import (
	"context"
	"net/netip"
	"os"
	"testing"
	"time"
)

// TestLinuxTriangle is the whole job on the linux-triangle lesson: up with
// stage 0, a ping across every link, stage 1, pings with the new
// addresses, down, and nothing left.
func TestLinuxTriangle(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t0 := time.Now()
	inst, err := Up(ctx, lessonPath(t, "linux-triangle"), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("up and stage 0 configured in %.1fs", time.Since(t0).Seconds())
	hostLink := hostLinkOf(t, opts)
	for _, e := range inst.Endpoints {
		if e.State != StateConfigured || e.Stage != 0 {
			t.Errorf("%s: state %s stage %d (%s); want configured stage 0", e.Name, e.State, e.Stage, e.Error)
		}
		if !e.Address.IsValid() || len(e.Presentations) != 1 || e.Presentations[0].Access == "" {
			t.Errorf("%s: address %v presentations %+v", e.Name, e.Address, e.Presentations)
		}
		if _, err := os.Stat(e.ConsoleSocket); err != nil {
			t.Errorf("%s: console socket: %v", e.Name, err)
		}
	}

	checks, err := inst.CheckLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 6 {
		t.Errorf("CheckLinks: %d checks, want 6 (3 links, both ways)", len(checks))
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("stage 0: %s → %s (%s) via %s: %v", c.From, c.To, c.Address, c.Interface, c.Err)
		}
	}

	// Reattach from the state directory alone, as `lesson configure` does.
	again, err := Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Configure(ctx, 1); err != nil {
		t.Fatalf("Configure(1): %v", err)
	}
	// Stage 1: 192.168.XY.0/24 between rX and rY, host N on rN.
	for _, p := range []struct{ from, to string }{{"r1", "192.168.12.2"}, {"r2", "192.168.12.1"}, {"r2", "192.168.23.3"},
		{"r3", "192.168.23.2"}, {"r1", "192.168.13.3"}, {"r3", "192.168.13.1"}} {
		if err := again.Ping(ctx, p.from, netip.MustParseAddr(p.to)); err != nil {
			t.Errorf("stage 1: %v", err)
		}
	}
	// The stage-0 addresses are gone.
	if _, err := again.Run(ctx, "r1", "ping -c 1 -W 1 10.12.0.3"); err == nil {
		t.Errorf("stage 1: r1 still reaches r2 at its stage-0 address")
	}
	for _, e := range again.Status(ctx) {
		if e.State != StateConfigured || e.Stage != 1 {
			t.Errorf("after stage 1: %s: %s stage %d", e.Name, e.State, e.Stage)
		}
	}

	if err := again.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertClean(t, opts, hostLink)
}
