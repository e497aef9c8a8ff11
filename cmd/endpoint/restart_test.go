package main

import (
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
)

// readyCount is how many times the launcher reported the guest ready.
func (l *launcher) readyCount() int { return strings.Count(l.stdout.String(), ": ready in ") }

// waitReadyN waits until the guest was reported ready n times.
func (l *launcher) waitReadyN(t *testing.T, n int, d time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for l.readyCount() < n {
		select {
		case <-l.done:
			t.Fatalf("endpoint exited (%v) before ready #%d:\nstdout:\n%s\nstderr:\n%s", l.err, n, l.stdout, l.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(t0) > d {
			t.Fatalf("not ready #%d after %v:\n%s\n%s", n, d, l.stdout, l.stderr)
		}
	}
	return time.Since(t0)
}

func (l *launcher) killQEMU(t *testing.T) {
	t.Helper()
	b, err := os.ReadFile(l.state.QEMUPID())
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
}

// peerIndex is the ifindex of the peer's end of eth1: a restart in place
// must not touch the peer's link.
func peerIndex(t *testing.T, ns string) int {
	t.Helper()
	h, err := nsutil.Handle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	l, err := h.LinkByName("p1")
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().Index
}

// The supervision must-show at the launcher: QEMU killed → started again
// in place at once (no backoff before the first restart), ready again,
// the data NIC re-stitched to the same eth1 (the peer's link untouched),
// the restart recorded; SIGUSR1 restarts on demand; SIGTERM then stops it
// and the state directory goes with it.
func TestRunRestartsInPlace(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 1)
	l := startLauncher(t, c.NS, "--image", im.Dir, "--name", "ep-heal", "--forward", "22", "--interfaces", "1", "--grace", "30s")
	boot := l.waitReady(t)
	mgmt := net.JoinHostPort(c.Eth0Addr.String(), "22")
	peer := peerIndex(t, c.PeerNS)
	viaEth1 := func() {
		t.Helper()
		qemulaunchtest.SSH(t, "", mgmt, user, pass, "sudo ip addr add 192.0.2.2/24 dev eth1 && sudo ip link set eth1 up", nil)
		if out := qemulaunchtest.SSH(t, c.PeerNS, "192.0.2.2:22", user, pass, "hostname", nil); out != "ep-heal\n" {
			t.Fatalf("via eth1 the guest said %q", out)
		}
	}
	viaEth1()

	t0 := time.Now()
	l.killQEMU(t)
	back := l.waitReadyN(t, 2, 3*time.Minute)
	t.Logf("first boot %v; killed → ready again %v", boot.Round(time.Millisecond), back.Round(time.Millisecond))
	if !l.stdout.has("restart 1 (1 in a row, at most 5) in 0s") {
		t.Errorf("the first restart was not immediate:\n%s", l.stdout)
	}
	r, err := qemulaunch.ReadRestarts(l.state)
	if err != nil || r.Count != 1 || !strings.Contains(r.LastExit, "died") || r.At.Before(t0) {
		t.Errorf("restarts = %+v, %v; want 1, last exit died", r, err)
	}
	if got := peerIndex(t, c.PeerNS); got != peer {
		t.Errorf("the peer's link was replaced (ifindex %d → %d)", peer, got)
	}
	viaEth1() // a fresh guest: its address again, through the re-stitched TAP

	l.cmd.Process.Signal(syscall.SIGUSR1)
	l.waitReadyN(t, 3, 3*time.Minute)
	if r, _ := qemulaunch.ReadRestarts(l.state); r.Count != 2 || r.LastExit != "restart requested" {
		t.Errorf("after SIGUSR1 restarts = %+v", r)
	}

	l.cmd.Process.Signal(syscall.SIGTERM)
	if code := l.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, l.stderr)
	}
	if _, err := os.Stat(string(l.state)); !os.IsNotExist(err) {
		ents, _ := os.ReadDir(string(l.state))
		t.Errorf("state directory left after a clean stop: %v %v", err, ents)
	}
	qemulaunchtest.AssertClean(t, c.NS)
}

// A VM that keeps dying is given up after --max-restarts in a row: the
// launcher exits "died" and its health says why.
func TestRunRestartLimit(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 0)
	l := startLauncher(t, c.NS, "--image", im.Dir, "--name", "ep-limit", "--forward", "22", "--max-restarts", "1")
	l.waitReady(t)
	l.killQEMU(t)
	l.waitReadyN(t, 2, 3*time.Minute)
	l.killQEMU(t)
	if code := l.wait(t, time.Minute); code != qemulaunch.ExitCodeDied {
		t.Fatalf("exit %d, want %d:\n%s", code, qemulaunch.ExitCodeDied, l.stderr)
	}
	state, detail, err := qemulaunch.ReadHealth(l.state)
	if err != nil || state != qemulaunch.HealthFailed || !strings.Contains(detail, "gave up after 1 restarts") {
		t.Errorf("health = %s: %s (%v)", state, detail, err)
	}
	qemulaunchtest.AssertClean(t, c.NS)
}
