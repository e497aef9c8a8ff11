package wiring

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
)

// bigModel is n endpoints in a ring (link i: e_i ↔ e_i+1) plus chords
// (e_i ↔ e_i+7) up to links links, each with its own /24.
func bigModel(n, links int) *endpoint.Model {
	var names []string
	for i := range n {
		names = append(names, fmt.Sprintf("e%d", i))
	}
	var conns []conn
	for k := range links {
		i, step := k%n, 1
		if k >= n {
			step = 7
		}
		conns = append(conns, conn{names[i], names[(i+step)%n], fmt.Sprintf("10.%d.%d.0/24", 128+k/256, k%256)})
	}
	return buildModel("bench", names, conns, false)
}

// ipScripts writes the same wiring as Apply — namespaces; the management
// bridge in a fabric namespace with an uplink to the host holding the
// gateway address; per endpoint an eth0 veth onto the bridge with address
// and default route; per link a veth pair with addresses — as a script of
// ip commands, and the script that removes it. It does not turn off
// checksum offload (ethtool is not installed), so it does a little less
// than Apply.
func ipScripts(p *Plan, prefix string, mgmt netip.Prefix) (up, down string) {
	var u, d strings.Builder
	ns := func(e string) string { return prefix + "-" + e }
	fab, host := prefix+"-fabric", prefix+"h"
	gw := netip.PrefixFrom(mgmt.Addr().Next(), mgmt.Bits())
	fmt.Fprintf(&u, "set -e\nip netns add %s\n", fab)
	for _, e := range p.Endpoints {
		fmt.Fprintf(&u, "ip netns add %s\n", ns(e.Name))
	}
	fmt.Fprintf(&u, "ip -n %s link add mgmt type bridge\nip -n %s link set mgmt up\n", fab, fab)
	fmt.Fprintf(&u, "ip link add %s type veth peer name uplink netns %s\n", host, fab)
	fmt.Fprintf(&u, "ip -n %s link set uplink master mgmt up\n", fab)
	fmt.Fprintf(&u, "ip addr add %s dev %s\nip link set %s up\n", gw, host, host)
	for _, e := range p.Endpoints {
		fmt.Fprintf(&u, "ip -n %s link add %s type veth peer name eth0 netns %s\n", fab, e.MgmtPort, ns(e.Name))
		fmt.Fprintf(&u, "ip -n %s link set %s master mgmt up\n", fab, e.MgmtPort)
		fmt.Fprintf(&u, "ip -n %s link set lo up\n", ns(e.Name))
		fmt.Fprintf(&u, "ip -n %s link set eth0 up\n", ns(e.Name))
		fmt.Fprintf(&u, "ip -n %s addr add %s dev eth0\n", ns(e.Name), mgmtAddr(mgmt, e.Pos))
		fmt.Fprintf(&u, "ip -n %s route add default via %s\n", ns(e.Name), gw.Addr())
	}
	for _, l := range p.Links {
		a, b := ns(l.A.Endpoint), ns(l.B.Endpoint)
		fmt.Fprintf(&u, "ip -n %s link add %s mtu %d type veth peer name %s netns %s\n", a, l.A.Interface, l.MTU, l.B.Interface, b)
		fmt.Fprintf(&u, "ip -n %s link set %s up\nip -n %s link set %s up\n", a, l.A.Interface, b, l.B.Interface)
		fmt.Fprintf(&u, "ip -n %s addr add %s dev %s\nip -n %s addr add %s dev %s\n", a, l.A.Address, l.A.Interface, b, l.B.Address, l.B.Interface)
	}
	fmt.Fprintf(&d, "ip link del %s\nip netns del %s\n", host, fab)
	for _, e := range p.Endpoints {
		fmt.Fprintf(&d, "ip netns del %s\n", ns(e.Name))
	}
	return u.String(), d.String()
}

// BenchmarkApply100Endpoints200Links wires 100 endpoints and 200 links with
// Apply and tears them down, then does the same with a script of ip
// commands, and reports both directions and the speed-up.
func BenchmarkApply100Endpoints200Links(b *testing.B) {
	ektest.RequireRoot(b)
	ektest.RequireTool(b, "ip", "bash")
	inst := testInstance()
	l := &Local{StateRoot: b.TempDir(), AssignLinkAddresses: true}
	p, err := NewPlan(bigModel(100, 200), Options{Instance: inst})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	b.Cleanup(func() { l.Teardown(ctx, l.StateDir(inst)) })
	prefix := ektest.Name("ekb")[:12]
	dir := b.TempDir()
	run := func(script string) error {
		path := filepath.Join(dir, "s.sh")
		if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
			return err
		}
		if out, err := exec.Command("bash", path).CombinedOutput(); err != nil {
			return fmt.Errorf("%v\n%s", err, out)
		}
		return nil
	}
	// Teardown, like `ip netns del`, returns once the namespaces are
	// unmounted; the kernel frees their devices in the background, which
	// slows namespace creation and link deletion meanwhile. Pause after
	// each teardown so each run starts on a quiet kernel.
	settle := func() { time.Sleep(3 * time.Second) }
	var up, down, ipUp, ipDown time.Duration
	b.ResetTimer()
	for range b.N {
		t0 := time.Now()
		st, err := l.Apply(ctx, p)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := l.Teardown(ctx, l.StateDir(inst)); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		up, down = up+t1.Sub(t0), down+t2.Sub(t1)
		settle()

		upScript, downScript := ipScripts(p, prefix, st.MgmtSubnet)
		b.Cleanup(func() { run(downScript) })
		t0 = time.Now()
		if err := run(upScript); err != nil {
			b.Fatal(err)
		}
		t1 = time.Now()
		if err := run(downScript); err != nil {
			b.Fatal(err)
		}
		t2 = time.Now()
		ipUp, ipDown = ipUp+t1.Sub(t0), ipDown+t2.Sub(t1)
		settle()
	}
	n := float64(b.N)
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(up.Seconds()/n, "up-s/op")
	b.ReportMetric(down.Seconds()/n, "down-s/op")
	b.ReportMetric(ipUp.Seconds()/n, "ip-up-s/op")
	b.ReportMetric(ipDown.Seconds()/n, "ip-down-s/op")
	b.ReportMetric(ipUp.Seconds()/up.Seconds(), "up-speedup-x")
	b.ReportMetric(ipDown.Seconds()/down.Seconds(), "down-speedup-x")
}
