package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// endpointNow is the endpoint's record read again from disk, with Status
// applied.
func endpointNow(t *testing.T, dir, name string, opts Options) RunningEndpoint {
	t.Helper()
	inst, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range inst.Status(context.Background()) {
		if e.Name == name {
			return e
		}
	}
	t.Fatalf("no endpoint %s", name)
	return RunningEndpoint{}
}

// waitHealed waits until the healer has configured a boot of the endpoint
// other than oldBoot, and returns the time it took and the record.
func waitHealed(t *testing.T, dir, name, oldBoot string, opts Options, d time.Duration) (time.Duration, RunningEndpoint) {
	t.Helper()
	t0 := time.Now()
	for {
		e := endpointNow(t, dir, name, opts)
		if e.BootID != oldBoot && e.BootID != "" && e.State == StateConfigured {
			return time.Since(t0), e
		}
		if time.Since(t0) > d {
			heal, _ := os.ReadFile(dir + "/" + healerLog)
			t.Fatalf("%s not configured again after %v: %+v\nhealer log:\n%s", name, d, e, heal)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func qemuPID(t *testing.T, e RunningEndpoint) int {
	t.Helper()
	b, err := os.ReadFile(qemulaunch.StateDir(e.StateDir).QEMUPID())
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

func linkIndex(t *testing.T, ns, name string) int {
	t.Helper()
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName(name)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

func checkLinksOK(t *testing.T, ctx context.Context, inst *Instance, when string) {
	t.Helper()
	checks, err := inst.CheckLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("%s: %s → %s (%s): %v", when, c.From, c.To, c.Address, c.Err)
		}
	}
}

// The supervision must-show, with no lesson command running (the healer
// is a process of its own): QEMU SIGKILLed → restarted in place, stage 0
// configured on it again within its boot + its configure time + 1 s, the
// peer's link untouched, the link working; while it restarts ssh fails at
// once saying so; the launcher SIGKILLed, a link's veth deleted, the
// endpoint's namespace deleted → each healed and the link working again;
// `lesson restart --reset` on demand; then down leaves nothing.
func TestSupervision(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	inst, err := Up(ctx, pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	hostLink := hostLinkOf(t, opts)
	if inst.HealerPID == 0 || len(HealerProcesses(inst.Dir)) != 1 {
		t.Fatalf("no healer: pid %d, found %v", inst.HealerPID, HealerProcesses(inst.Dir))
	}
	a, _ := inst.Endpoint("a")
	b, _ := inst.Endpoint("b")
	peer := linkIndex(t, b.Namespace, "eth1")

	// 1. QEMU killed.
	killed := time.Now()
	syscall.Kill(qemuPID(t, a), syscall.SIGKILL)
	for endpointNow(t, inst.Dir, "a", opts).State != StateRestarting {
		time.Sleep(10 * time.Millisecond)
	}
	t0 := time.Now()
	_, err = inst.DialSSH(ctx, "a")
	if !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "restarting") || time.Since(t0) > 2*time.Second {
		t.Errorf("ssh while restarting: %v after %v; want ErrNotRunning saying restarting within 2 s", err, time.Since(t0))
	}
	_, a2 := waitHealed(t, inst.Dir, "a", a.BootID, opts, 3*time.Minute)
	took := time.Since(killed) // to within the 50 ms polling
	boot := lastBoot(t, a2)
	over := took - boot - a2.Configure
	t.Logf("QEMU killed → configured again in %v: its boot %v + its configure %v + %v (goal ≤ 1 s; first boot was %v); restarts %d, last exit %q",
		took.Round(time.Millisecond), boot.Round(time.Millisecond), a2.Configure.Round(time.Millisecond), over.Round(time.Millisecond),
		a.Boot.Round(time.Millisecond), a2.Restarts, a2.LastExit)
	if over > 3*time.Second { // the goal is 1 s; a loaded CI machine gets a margin
		t.Errorf("killed → configured again took %v over its boot and configure time", over)
	}
	if a2.Restarts != 1 || !strings.Contains(a2.LastExit, "died") || a2.Stage != 0 {
		t.Errorf("after the kill: restarts %d, last exit %q, stage %d", a2.Restarts, a2.LastExit, a2.Stage)
	}
	if got := linkIndex(t, b.Namespace, "eth1"); got != peer {
		t.Errorf("b's link was replaced (ifindex %d → %d)", peer, got)
	}
	checkLinksOK(t, ctx, inst, "after QEMU killed")

	// 2. The launcher killed: the healer places it anew.
	syscall.Kill(a2.PID, syscall.SIGKILL)
	_, a3 := waitHealed(t, inst.Dir, "a", a2.BootID, opts, 3*time.Minute)
	if a3.PID == a2.PID || a3.Restarts != 2 {
		t.Errorf("after the launcher kill: pid %d (was %d), restarts %d", a3.PID, a2.PID, a3.Restarts)
	}
	checkLinksOK(t, ctx, inst, "after the launcher was killed")

	// 3. A link's veth deleted: repaired, the VMs stitched to the new one.
	if out, err := exec.Command("ip", "-n", a.Namespace, "link", "del", "eth1").CombinedOutput(); err != nil {
		t.Fatalf("ip link del: %v %s", err, out)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		if e := endpointNow(t, inst.Dir, "a", opts); !strings.Contains(e.Error, "missing") {
			if _, err := os.Stat("/proc"); err == nil && linkExists(a.Namespace, "eth1") {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("eth1 not repaired in a minute")
		}
		time.Sleep(50 * time.Millisecond)
	}
	checkLinksOK(t, ctx, inst, "after a veth was deleted")

	// 4. The namespace deleted: placed anew, configured.
	a4 := endpointNow(t, inst.Dir, "a", opts)
	if err := nsutil.Delete(a.Namespace); err != nil {
		t.Fatal(err)
	}
	waitHealed(t, inst.Dir, "a", a4.BootID, opts, 3*time.Minute)
	checkLinksOK(t, ctx, inst, "after the namespace was deleted")

	// 5. On demand, with a fresh overlay.
	again, err := Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if err := again.RestartEndpoint(ctx, "b", true); err != nil {
		t.Fatalf("RestartEndpoint: %v", err)
	}
	if e := endpointNow(t, inst.Dir, "b", opts); e.State != StateConfigured || e.Restarts != 1 || e.LastExit != "restart requested" {
		t.Errorf("after restart: %+v", e)
	}
	checkLinksOK(t, ctx, inst, "after lesson restart b")

	if err := again.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertClean(t, opts, hostLink)
}

// lastBoot is how long the endpoint's last boot took, as its launcher
// reported it ("ready in Xs").
func lastBoot(t *testing.T, e RunningEndpoint) time.Duration {
	t.Helper()
	raw, err := os.ReadFile(e.Log)
	if err != nil {
		t.Fatal(err)
	}
	i := strings.LastIndex(string(raw), ": ready in ")
	if i < 0 {
		t.Fatalf("no boot time in %s", e.Log)
	}
	var secs float64
	fmt.Sscanf(string(raw[i+len(": ready in "):]), "%fs", &secs)
	return time.Duration(secs * float64(time.Second))
}

func linkExists(ns, name string) bool {
	h, err := nsutil.Handle(ns)
	if err != nil {
		return false
	}
	defer h.Close()
	_, err = h.LinkByName(name)
	return err == nil
}

// Fail fast: with restart policy never, a killed endpoint stays down, and
// configure, ssh and console on it fail within 2 s naming its state.
func TestFailFast(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	opts.Restart = qemulaunch.RestartNever
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if inst.HealerPID != 0 {
		t.Errorf("a healer (pid %d) for policy never", inst.HealerPID)
	}
	a, _ := inst.Endpoint("a")
	syscall.Kill(qemuPID(t, a), syscall.SIGKILL)
	for qemulaunch.LauncherRunning(a.PID, a.StateDir) {
		time.Sleep(20 * time.Millisecond)
	}
	if e := endpointNow(t, inst.Dir, "a", opts); e.State != StateFailed || !strings.Contains(e.Error, "died") {
		t.Errorf("status: %s (%s); want failed, died", e.State, e.Error)
	}
	for what, call := range map[string]func() error{
		"configure": func() error { return inst.Configure(ctx, 0) },
		"ssh":       func() error { _, err := inst.DialSSH(ctx, "a"); return err },
		"console":   func() error { _, err := inst.Console(ctx, "a"); return err },
	} {
		t0 := time.Now()
		err := call()
		if took := time.Since(t0); !errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "endpoint a is down") || took > 2*time.Second {
			t.Errorf("%s: %v after %v; want ErrNotRunning naming a's state within 2 s", what, err, took)
		}
	}
	var cerr *ConfigureError
	if err := inst.Configure(ctx, 0); !errors.As(err, &cerr) || len(cerr.Failed) != 1 {
		t.Errorf("configure: %v; want only a failed (b configured)", err)
	}
}
