package endpointkit

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/imagetest"
)

// TestFRROSPF brings up the frr-ospf lesson (three FRR routers configured
// by Ansible) and asserts through vtysh over SSH that every router has its
// two OSPF neighbours in state Full.
func TestFRROSPF(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, map[string]string{"frr": imagetest.FRR(t).Dir})
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	t0 := time.Now()
	inst, err := Up(ctx, lessonPath(t, "frr-ospf"), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("up and configured in %.1fs", time.Since(t0).Seconds())
	hostLink := hostLinkOf(t, opts)

	// Adjacencies form within seconds of the last FRR restart (1 s hellos,
	// 2 s retransmits); a loaded machine stalls the guests, hence the margin.
	deadline := time.Now().Add(3 * time.Minute)
	for _, r := range []string{"r1", "r2", "r3"} {
		var out string
		for {
			res, err := inst.Run(ctx, r, "vtysh -c 'show ip ospf neighbor'")
			out = res.Output
			if err == nil && strings.Count(out, "Full/") == 2 {
				break
			}
			if time.Now().After(deadline) {
				diagnose(ctx, t, inst, ospfDiag)
				t.Fatalf("%s: OSPF neighbours not Full (err %v):\n%s", r, err, out)
			}
			time.Sleep(time.Second)
		}
		t.Logf("%s:\n%s", r, out)
	}
	// OSPF routes: r1 reaches r3's loopback.
	if err := inst.Ping(ctx, "r1", mustAddr("10.0.0.3")); err != nil {
		diagnose(ctx, t, inst, ospfDiag)
		t.Errorf("r1 → r3 loopback over OSPF: %v", err)
	}
	if err := inst.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertClean(t, opts, hostLink)
}

// ospfDiag is what a failed TestFRROSPF asks each router: its neighbours,
// the essentials of each OSPF interface, the interface addresses zebra
// holds in its configuration, and what FRR's supervisor (watchfrr) killed
// or failed to start since boot.
const ospfDiag = `vtysh -c 'show ip ospf neighbor' -c 'show ip ospf interface' | ` +
	`grep -E '^[a-z]|Internet Address|Network Type|Neighbor Count'; ` +
	`echo "zebra config: $(vtysh -c 'show running-config' | grep -c '^ ip address') interface addresses"; ` +
	`sudo -n journalctl -b -u frr --no-pager -o short-monotonic | ` +
	`grep -E 'Stopping|Started frr|still running|terminated|Failed|Cannot' | tail -n 12`

// TestNetconfBasics brings up netconf-basics (configured with NETCONF
// edit-config), reads stage 0 back with get-config, applies stage 1 and
// reads both back.
func TestNetconfBasics(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, map[string]string{"netconf": imagetest.Netconf(t).Dir})
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, lessonPath(t, "netconf-basics"), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	hostLink := hostLinkOf(t, opts)
	getConfig := func() string {
		t.Helper()
		tgt, err := inst.sshTarget(ctx, "device")
		if err != nil {
			t.Fatal(err)
		}
		nc, err := configure.DialNetconf(ctx, tgt, configure.DialOptions{})
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		data, err := nc.GetConfig(ctx, "running", "")
		if err != nil {
			t.Fatal(err)
		}
		return data
	}
	if data := getConfig(); !strings.Contains(data, "<contact>lab@example.net</contact>") || !strings.Contains(data, "<hostname>netconf-lab</hostname>") {
		t.Errorf("stage 0: running config lacks the contact:\n%s", data)
	}
	if err := inst.Configure(ctx, 1); err != nil {
		t.Fatalf("Configure(1): %v", err)
	}
	data := getConfig()
	if !strings.Contains(data, "behind the launcher's port forwarding") || !strings.Contains(data, "lab@example.net") {
		t.Errorf("stage 1: running config lacks the interface description or the stage 0 contact:\n%s", data)
	}
	if err := inst.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertClean(t, opts, hostLink)
}
