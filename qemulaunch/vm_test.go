package qemulaunch

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
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
