package kuberun_test

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/containerdtest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// TestKubernetesLinuxTriangle is issue #12's must-show: `lesson up
// --kubeconfig --check` of linux-triangle on a real single-node cluster
// (kubelet, containerd, Multus, a registry the images are pushed to):
// pods Ready, SSH and stage 0 configured through port forwards, every link
// pinged from both ends; the instance reopened from its record alone →
// stage 1 → pings with the new addresses, status, ssh, console, logs →
// `lesson down` → the namespace is gone, no pods, no link bridges and no
// IPAM leases are left on the node.
func TestKubernetesLinuxTriangle(t *testing.T) {
	requireCluster(t)
	images := tinyOCI(t)
	lesson := goBuild(t, "./cmd/lesson", "lesson")
	cp := kubetest.StartCluster(t)
	rt, err := kuberun.New(runtimeOptions(t, cp))
	if err != nil {
		t.Fatal(err)
	}
	opts := upOptions(t, rt, images)
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()

	// As a person would: lesson up --kubeconfig, pinging every link from
	// both ends (--check) once stage 0 is configured.
	t0 := time.Now()
	out := lessonCmd(ctx, t, lesson, "up", "--kubeconfig", cp.Kubeconfig, "--registry", cp.Node.Registry+"/endpointkit",
		"--instance", opts.Instance, "--state-root", opts.StateRoot, "--accel", "tcg",
		"--images", filepath.Dir(images["tiny"]), "--check", lessonPath(t, "linux-triangle"))
	t.Logf("lesson up --kubeconfig --check (ready, stage 0 configured, links pinged) in %.1fs", time.Since(t0).Seconds())
	if n := strings.Count(out, "  ok\n"); n != 6 || strings.Contains(out, "FAILED") {
		t.Errorf("stage 0: %d link checks ok, want 6 (3 links, both ends):\n%s", n, out)
	}

	// The record alone says where the instance runs (as for every later
	// lesson command).
	inst, err := endpointkit.Open(endpointkit.InstanceDir(opts.StateRoot, opts.Instance), endpointkit.Options{RuntimeFor: func(rec endpointkit.RuntimeRecord) (endpointkit.Runtime, error) {
		if rec.Kind != kuberun.Kind || rec.Kubeconfig != cp.Kubeconfig {
			t.Errorf("instance record says runtime %+v", rec)
		}
		return kuberun.ForRecord(rec, kuberun.Options{Logger: testLogger(t)})
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range inst.Endpoints {
		if e.State != endpointkit.StateConfigured || e.Pod != kubeplan.Namespace(opts.Instance)+"/"+e.Name {
			t.Errorf("%s: state %s, pod %q", e.Name, e.State, e.Pod)
		}
		for _, p := range e.Presentations {
			if p.Access != "lesson ssh --instance "+opts.Instance+" "+e.Name {
				t.Errorf("%s: presentation %s reached by %q", e.Name, p.Name, p.Access)
			}
		}
	}
	if err := inst.Configure(ctx, 1); err != nil {
		t.Fatalf("Configure(1): %v", err)
	}
	// Stage 1 renumbers: 192.168.XY.N between rX and rY, host N on rN.
	for _, p := range []struct{ from, to string }{
		{"r1", "192.168.12.2"}, {"r1", "192.168.13.3"}, {"r2", "192.168.12.1"},
		{"r2", "192.168.23.3"}, {"r3", "192.168.13.1"}, {"r3", "192.168.23.2"},
	} {
		if err := inst.Ping(ctx, p.from, netip.MustParseAddr(p.to)); err != nil {
			t.Errorf("stage 1: %v", err)
		}
	}

	for _, e := range inst.Status(ctx) {
		if e.State != endpointkit.StateConfigured || e.Stage != 1 {
			t.Errorf("status %s: %s (stage %d) %s", e.Name, e.State, e.Stage, e.Error)
		}
	}
	if res, err := inst.Run(ctx, "r2", "hostname"); err != nil || strings.TrimSpace(res.Output) != "r2" {
		t.Errorf("ssh r2 hostname: %q %v", res.Output, err)
	}
	// The lesson directory reached the guest (ConfigMap → pod → 9p share),
	// contents and modes.
	want, err := os.ReadFile(filepath.Join(lessonPath(t, "linux-triangle"), "stage1", "configs", "r3.sh"))
	if err != nil {
		t.Fatal(err)
	}
	if res, err := inst.Run(ctx, "r3", "cat /antidote/stage1/configs/r3.sh && test -x /antidote/stage1/configs/r3.sh && test -f /antidote/lesson.meta.yaml && echo lesson-ok"); err != nil ||
		res.Output != string(want)+"lesson-ok\n" {
		t.Errorf("the lesson directory in r3's guest: %q %v; want %q and an executable script", res.Output, err, want)
	}
	checkConsole(ctx, t, inst, "r3")
	var logs bytes.Buffer
	if err := inst.WriteLog(ctx, "r1", &logs, endpointkit.LogOptions{Source: endpointkit.LogLauncher}); err != nil || !strings.Contains(logs.String(), "ready") {
		t.Errorf("launcher log of r1 (%v):\n%s", err, logs.String())
	}
	logs.Reset()
	if err := inst.WriteLog(ctx, "r1", &logs, endpointkit.LogOptions{Lines: 5}); err != nil || logs.Len() == 0 {
		t.Errorf("console log of r1 (%v): %q", err, logs.String())
	}

	t0 = time.Now()
	lessonCmd(ctx, t, lesson, "down", "--instance", opts.Instance, "--state-root", opts.StateRoot)
	t.Logf("lesson down in %.1fs", time.Since(t0).Seconds())
	if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
		t.Errorf("left after down: %s", strings.Join(left, "; "))
	}
	// Down itself stopped the pods' containers: no shim is left on the
	// node (the cluster runs nothing else), before the cluster stops.
	shims := containerdtest.ShimPIDs(cp.Node.Containerd)
	for deadline := time.Now().Add(30 * time.Second); len(shims) > 0 && time.Now().Before(deadline); shims = containerdtest.ShimPIDs(cp.Node.Containerd) {
		time.Sleep(200 * time.Millisecond)
	}
	if len(shims) > 0 {
		t.Errorf("container shims left after down: pids %v", shims)
	}
	if leases := ipamLeases(t, cp); len(leases) > 0 {
		t.Errorf("IPAM leases left on the node: %s", strings.Join(leases, ", "))
	}
	if _, err := os.Stat(inst.Dir); err == nil {
		t.Errorf("state directory %s left", inst.Dir)
	}
	// The pods were all on the one node, and the namespace is gone.
	if nss, err := cp.Clientset(t).CoreV1().Namespaces().List(ctx, metav1.ListOptions{LabelSelector: kubeplan.LabelManagedBy + "=" + kubeplan.ManagedBy}); err != nil || len(nss.Items) > 0 {
		t.Errorf("namespaces left: %v %v", nss, err)
	}
}

// checkConsole attaches to an endpoint's console through the API server,
// sees the replayed lines, and gets an answer to a keystroke.
func checkConsole(ctx context.Context, t *testing.T, inst *endpointkit.Instance, ep string) {
	t.Helper()
	cctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	c, err := inst.Console(cctx, ep)
	if err != nil {
		t.Errorf("console %s: %v", ep, err)
		return
	}
	defer c.Close()
	if _, err := c.Write([]byte("\r")); err != nil {
		t.Errorf("console %s: write: %v", ep, err)
	}
	got := make(chan string, 1)
	go func() {
		var b bytes.Buffer
		buf := make([]byte, 4096)
		for !strings.Contains(b.String(), "login:") && !strings.Contains(b.String(), "#") {
			n, err := c.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		got <- b.String()
	}()
	select {
	case s := <-got:
		if !strings.Contains(s, "login:") && !strings.Contains(s, "#") {
			t.Errorf("console %s: no prompt in %q", ep, s)
		}
	case <-cctx.Done():
		t.Errorf("console %s: nothing read in a minute", ep)
	}
}

// ipamLeases lists the leases left in the node's default network IPAM
// directory (host-local keeps one file per address in use, beside
// last_reserved_ip.* and lock).
func ipamLeases(t *testing.T, cp *kubetest.ControlPlane) []string {
	var out []string
	filepath.WalkDir(cp.Node.IPAMDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if n := d.Name(); n != "lock" && !strings.HasPrefix(n, "last_reserved_ip") {
			out = append(out, p)
		}
		return nil
	})
	return out
}
