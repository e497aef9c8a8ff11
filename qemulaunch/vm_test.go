package qemulaunch

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
)

// The tiny image in a container-like namespace: SSH to eth0's address on
// the forwarded port, the lesson share, the hostname, graceful stop with a
// clean overlay check.
func TestTinyEndToEnd(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 0)
	lesson := t.TempDir()
	os.WriteFile(filepath.Join(lesson, "hello.txt"), []byte("lesson file content\n"), 0o644)
	name := "tiny" + strconv.Itoa(os.Getpid()%1000)
	vm, err := Start(timeoutCtx(t, time.Minute), Config{
		Name: name, Image: im, NetNS: c.NS, Accel: AccelTCG, LessonDir: lesson,
		StateDir: filepath.Join(t.TempDir(), "state"), Forwards: []Forward{{GuestPort: 22}},
		Logger: testLogger(t),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	if err := vm.Ready(timeoutCtx(t, 2*time.Minute)); err != nil {
		t.Fatalf("%v\nconsole:\n%s", err, vm.Console().Tail(2000))
	}
	if s, _, _ := ReadHealth(vm.Plan().Dir); s != HealthReady {
		t.Errorf("health %q", s)
	}
	addr := net.JoinHostPort(c.Eth0Addr.String(), "22")
	out := qemulaunchtest.SSH(t, "", addr, "antidote", "antidotepassword", "cat /antidote/hello.txt; hostname", nil)
	if out != "lesson file content\n"+name+"\n" {
		t.Errorf("guest said %q", out)
	}
	// Only the declared port is exposed.
	if c, err := net.DialTimeout("tcp", net.JoinHostPort(c.Eth0Addr.String(), "830"), time.Second); err == nil {
		c.Close()
		t.Error("port 830 reachable though not forwarded")
	}
	if err := vm.Stop(timeoutCtx(t, time.Minute)); err != nil {
		t.Fatal(err)
	}
	ex, err := vm.Wait(bg())
	if err != nil || ex.Reason != ExitStopped || ex.Shutdown != "guest-shutdown" {
		t.Errorf("exit %s, %v; want stopped (guest-shutdown)", ex, err)
	}
	if !strings.Contains(string(vm.Console().Tail(4000)), "power") {
		t.Logf("console tail: %s", vm.Console().Tail(500))
	}
	assertStateClean(t, vm.Plan().Dir)
	qemulaunchtest.AssertClean(t, c.NS)
}

// A container interface that vanishes and comes back (a re-created link)
// is re-stitched to the same TAP; cleanup works either way.
func TestInterfaceVanishesAndReturns(t *testing.T) {
	ektest.RequireRoot(t)
	c := qemulaunchtest.NewContainer(t, 1)
	cfg := blankConfig(t)
	cfg.NetNS, cfg.DataInterfaces = c.NS, 1
	vm, err := Start(bg(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	h, _ := nsutil.Handle(c.NS)
	defer h.Close()
	eth1, _ := h.LinkByName("eth1")
	if err := h.LinkDel(eth1); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	qemulaunchtest.VethPair(t, c.NS, "eth1", c.PeerNS, "p1")
	neweth, _ := h.LinkByName("eth1")
	tap, _ := h.LinkByName("tap1")
	deadline := time.Now().Add(5 * time.Second)
	for {
		ok := redirectsTo(h, neweth, tap) && redirectsTo(h, tap, neweth)
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("eth1 was re-created but not re-stitched to tap1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := vm.Stop(bg()); err != nil {
		t.Fatal(err)
	}
	qemulaunchtest.AssertClean(t, c.NS)
	assertStateClean(t, vm.Plan().Dir)
}

// redirectsTo reports whether src has exactly one redirect filter, to dst.
func redirectsTo(h *netlink.Handle, src, dst netlink.Link) bool {
	fs, err := h.FilterList(src, netlink.MakeHandle(0xffff, 0))
	if err != nil {
		return false
	}
	n := 0
	for _, f := range fs {
		if u, ok := f.(*netlink.U32); ok && u.RedirIndex != 0 {
			if u.RedirIndex != dst.Attrs().Index {
				return false
			}
			n++
		}
	}
	return n == 1
}

// Without CAP_NET_ADMIN the TAP cannot be made: a clear error, nothing left.
func TestNotRootIsClear(t *testing.T) {
	ektest.RequireRoot(t)
	ektest.RequireTool(t, "setpriv", "ip")
	c := qemulaunchtest.NewContainer(t, 1)
	im := blankImage(t)
	state := filepath.Join(t.TempDir(), "state")
	os.MkdirAll(state, 0o777)
	os.Chmod(filepath.Dir(state), 0o755)
	bin := filepath.Join(t.TempDir(), "endpoint")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/endpoint").CombinedOutput(); err != nil {
		t.Fatalf("build: %v %s", err, out)
	}
	os.Chmod(filepath.Dir(bin), 0o755)
	os.Chmod(im.Dir, 0o755)
	os.Chmod(filepath.Dir(im.Dir), 0o755)
	os.Chmod(state, 0o777)
	out, err := exec.Command("ip", "netns", "exec", c.NS, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
		bin, "run", "--image", im.Dir, "--name", "nobody", "--state", state, "--accel", "tcg", "--interfaces", "1").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "needs root or CAP_NET_ADMIN") {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
	qemulaunchtest.AssertClean(t, c.NS)
}

// A guest whose SSH host key is not the manifest's fails readiness at once
// with the reason, instead of retrying until the deadline.
func TestReadyRejectsWrongHostKey(t *testing.T) {
	ektest.RequireQEMU(t)
	im := *imagetest.Tiny(t)
	im.Manifest.HostKeys = []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:not-this-guest"}}
	vm, err := Start(bg(), Config{Name: "hostkey", Image: &im, Accel: AccelTCG,
		StateDir: filepath.Join(t.TempDir(), "s"), Management: Management{Address: mustAddr("127.0.0.1")},
		Forwards: []Forward{{GuestPort: 22, HostPort: AutoPort}}})
	if err != nil {
		t.Fatal(err)
	}
	defer vm.Kill()
	err = vm.Ready(timeoutCtx(t, 3*time.Minute))
	if err == nil || !strings.Contains(err.Error(), "not one the image manifest lists") || strings.Contains(err.Error(), "not within") {
		t.Fatalf("Ready = %v", err)
	}
	vm.Stop(bg())
	assertStateClean(t, vm.Plan().Dir)
}
