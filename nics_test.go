package endpointkit

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// TestNamedNICs: an image whose networkInterfaces names its data NICs
// swp1 and swp2 (testdata/images/tiny-swp, built from its recipe beside
// the lesson) has them so named in the guest — each on the NIC behind the
// container interface the lesson plans for it —, the stage's scripts
// written against those names configure them, and both links ping. The
// agent also takes 20 SSH sessions at once on one connection, as lesson
// scripts open them.
func TestNamedNICs(t *testing.T) {
	requireLaunch(t)
	py := ektest.DebianPython(t, "paramiko")
	opts := testOptions(t, nil)
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, filepath.Join(ektest.RepoRoot(t), "testdata", "lessons", "named-nics"), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	hostLink := hostLinkOf(t, opts)
	_, m, _, err := loadModel(inst.LessonDir, inst.Name, inst.imageDirs())
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range m.Endpoints {
		for _, it := range ep.Interfaces {
			res, err := inst.Run(ctx, ep.Name, "cat /sys/class/net/"+it.GuestName+"/address")
			if err != nil || strings.TrimSpace(res.Output) != it.MAC.String() {
				t.Errorf("%s: %s (the container's %s) has address %q, %v; want %s", ep.Name, it.GuestName, it.Name, res.Output, err, it.MAC)
			}
		}
		res, err := inst.Run(ctx, ep.Name, "ls /sys/class/net")
		if got := strings.Fields(res.Output); err != nil || strings.Join(got, " ") != "eth0 lo swp1 swp2" {
			t.Errorf("%s: interfaces %v, %v; want eth0 lo swp1 swp2", ep.Name, got, err)
		}
	}
	if g := m.Endpoint("a").Interfaces[1].GuestName; g != "swp2" {
		t.Errorf("a's eth2 is %q in the model; want swp2", g)
	}
	checks, err := inst.CheckLinks(ctx)
	if err != nil || len(checks) != 4 {
		t.Fatalf("CheckLinks: %d checks, %v", len(checks), err)
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("%s %s → %s %s: %v", c.From, c.Interface, c.To, c.Address, c.Err)
		}
	}
	runSessions(ctx, t, py, inst, "a")
	if err := inst.Down(ctx); err != nil {
		t.Fatal(err)
	}
	assertClean(t, opts, hostLink)
}

// runSessions runs testdata/scripts/sessions.py against an endpoint: 20
// SSH sessions at once on one connection, each must run its command.
func runSessions(ctx context.Context, tb testing.TB, py string, inst *Instance, endpoint string) {
	tb.Helper()
	rec, ok := inst.Endpoint(endpoint)
	if !ok {
		tb.Fatalf("no endpoint %s", endpoint)
	}
	addr, err := inst.runtime().Reach(ctx, rec, 22)
	if err != nil {
		tb.Fatal(err)
	}
	script := filepath.Join(ektest.RepoRoot(tb), "testdata", "scripts", "sessions.py")
	out, err := exec.CommandContext(ctx, py, script, addr.Addr().String(), strconv.Itoa(int(addr.Port())),
		"antidote", "antidotepassword").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "20 sessions at once: ok") {
		tb.Errorf("20 SSH sessions at once on %s: %v\n%s", endpoint, err, out)
	}
}
