package endpointkit

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// launchMACs are the guest NIC MACs the launchers of one instance of the
// pair lesson are given (model → qemulaunch.LaunchFor, as Up does).
func launchMACs(t *testing.T, instance string) []net.HardwareAddr {
	t.Helper()
	l, err := lessonmeta.Load(pairLesson(t), lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := (endpoint.Options{Instance: instance}).Build(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	var macs []net.HardwareAddr
	for _, ep := range m.Endpoints {
		for _, im := range qemulaunch.LaunchFor(ep, &vmimage.Image{}).MACs {
			macs = append(macs, im.MAC)
		}
	}
	return macs
}

// Per-instance identity on one L2: every guest NIC of two instances of one
// lesson — as their launchers are told — on one shared Linux bridge (as on
// a Kubernetes node): the bridge learns each MAC on its own port and every
// NIC answers every other. With the lesson's slug alone as the seed (the
// old derivation: one instance name for both) the MACs would be the same.
func TestInstanceMACsOnSharedBridge(t *testing.T) {
	ektest.RequireRoot(t)
	ektest.RequireTool(t, "ip", "bridge", "ping")
	a, b := launchMACs(t, "class-a"), launchMACs(t, "class-b")
	if same := launchMACs(t, "class-a"); fmt.Sprint(same) != fmt.Sprint(a) {
		t.Fatalf("MACs are not deterministic: %v, %v", a, same)
	}
	all := append(append([]net.HardwareAddr{}, a...), b...)
	br := ektest.NetNS(t)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	ip("-n", br, "link", "add", "br0", "type", "bridge")
	ip("-n", br, "link", "set", "br0", "up")
	nics := make([]string, len(all))
	for k, mac := range all {
		nics[k] = ektest.NetNS(t)
		ip("-n", br, "link", "add", fmt.Sprintf("p%d", k), "type", "veth", "peer", "name", "nic", "netns", nics[k])
		ip("-n", br, "link", "set", fmt.Sprintf("p%d", k), "master", "br0", "up")
		ip("-n", nics[k], "link", "set", "nic", "address", mac.String(), "up")
		ip("-n", nics[k], "addr", "add", fmt.Sprintf("10.199.0.%d/24", k+1), "dev", "nic")
	}
	for k := 1; k < len(all); k++ {
		out, err := exec.Command("ip", "netns", "exec", nics[0], "ping", "-c", "1", "-W", "2", fmt.Sprintf("10.199.0.%d", k+1)).CombinedOutput()
		if err != nil {
			t.Errorf("NIC %s (%s) does not answer: %v\n%s", all[k], nics[k], err, out)
		}
	}
	out, err := exec.Command("bridge", "-n", br, "fdb", "show", "br", "br0").CombinedOutput()
	if err != nil {
		t.Fatalf("bridge fdb: %v\n%s", err, out)
	}
	ports := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && f[1] == "dev" {
			ports[f[0]] = f[2]
		}
	}
	seen := map[string]bool{}
	for k, mac := range all {
		port := ports[mac.String()]
		if port != fmt.Sprintf("p%d", k) || seen[port] {
			t.Errorf("MAC %s learned on %q, want p%d (fdb:\n%s)", mac, port, k, out)
		}
		seen[port] = true
	}
}
