package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestUsageErrors(t *testing.T) {
	img := t.TempDir()
	cases := map[string]struct {
		args []string
		code int
		want string
	}{
		"no command":    {nil, qemulaunch.ExitCodeUsage, "no command"},
		"unknown":       {[]string{"fly"}, qemulaunch.ExitCodeUsage, "unknown command"},
		"no image":      {[]string{"run"}, qemulaunch.ExitCodeUsage, "--image is required"},
		"bad flag":      {[]string{"run", "--bogus"}, qemulaunch.ExitCodeUsage, "bogus"},
		"missing image": {[]string{"run", "--image", filepath.Join(img, "nope")}, qemulaunch.ExitCodeFailed, "manifest.json"},
		"stray arg":     {[]string{"run", "--image", img, "extra"}, qemulaunch.ExitCodeUsage, "unexpected"},
		"console gone":  {[]string{"console", "--state", img}, qemulaunch.ExitCodeFailed, "console.sock"},
		"health gone":   {[]string{"health", "--state", img}, qemulaunch.ExitCodeFailed, "health"},
		"nic no verb":   {[]string{"nic"}, qemulaunch.ExitCodeUsage, "nic add or nic del"},
		"nic no iface":  {[]string{"nic", "add", "--state", img}, qemulaunch.ExitCodeUsage, "needs --interface"},
		"nic bad mac":   {[]string{"nic", "add", "--state", img, "--interface", "eth3", "--mac", "x"}, qemulaunch.ExitCodeUsage, "--mac"},
		"nic no run":    {[]string{"nic", "del", "--state", img, "--interface", "eth3"}, qemulaunch.ExitCodeFailed, "no launcher answers"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			var out, errb bytes.Buffer
			err := Run(context.Background(), tc.args, strings.NewReader(""), &out, &errb)
			if got := qemulaunch.ExitCode(err); got != tc.code || err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Run(%q) = %v (exit %d); want exit %d mentioning %q", tc.args, err, got, tc.code, tc.want)
			}
		})
	}
	t.Run("bad env", func(t *testing.T) {
		t.Setenv("ENDPOINT_INTERFACES", "two")
		err := Run(context.Background(), []string{"run"}, nil, io.Discard, io.Discard)
		if qemulaunch.ExitCode(err) != qemulaunch.ExitCodeUsage || !strings.Contains(err.Error(), "ENDPOINT_INTERFACES") {
			t.Fatalf("err = %v", err)
		}
	})
}

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
)

// binaries builds the endpoint command and the guest-side LLDP receiver.
func binaries(t testing.TB) (endpoint, lldprecv string) {
	t.Helper()
	ektest.RequireTool(t, "go")
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "ekendpoint")
		if buildErr != nil {
			return
		}
		for pkg, out := range map[string]string{".": "endpoint", "./testdata/lldprecv": "lldprecv"} {
			cmd := exec.Command("go", "build", "-o", filepath.Join(binDir, out), pkg)
			cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
			if b, err := cmd.CombinedOutput(); err != nil {
				buildErr = errors.New(string(b))
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatalf("build: %v", buildErr)
	}
	return filepath.Join(binDir, "endpoint"), filepath.Join(binDir, "lldprecv")
}

// launcher is `endpoint run` started inside a container namespace.
type launcher struct {
	cmd    *exec.Cmd
	stdout *lineLog
	stderr *lineLog
	state  qemulaunch.StateDir
	done   chan struct{}
	err    error
}

type lineLog struct {
	mu    sync.Mutex
	lines []string
	cond  *sync.Cond
}

func newLineLog(r io.Reader) *lineLog {
	l := &lineLog{}
	l.cond = sync.NewCond(&l.mu)
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			l.mu.Lock()
			l.lines = append(l.lines, sc.Text())
			l.cond.Broadcast()
			l.mu.Unlock()
		}
	}()
	return l
}

func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

func (l *lineLog) has(s string) bool { return strings.Contains(l.String(), s) }

func startLauncher(t *testing.T, ns string, args ...string) *launcher {
	t.Helper()
	bin, _ := binaries(t)
	state := filepath.Join(t.TempDir(), "state")
	all := append([]string{"netns", "exec", ns, bin, "run", "--accel", "tcg", "--state", state}, args...)
	cmd := exec.Command("ip", all...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true} // a group of its own, like a shell job
	so, _ := cmd.StdoutPipe()
	se, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	l := &launcher{cmd: cmd, stdout: newLineLog(so), stderr: newLineLog(se), state: qemulaunch.StateDir(state), done: make(chan struct{})}
	go func() { l.err = cmd.Wait(); close(l.done) }()
	t.Cleanup(func() {
		select {
		case <-l.done:
		default:
			cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-l.done:
			case <-time.After(3 * time.Minute):
				cmd.Process.Kill()
			}
		}
		os.Remove(l.state.Overlay())
		assertStateClean(t, l.state)
	})
	return l
}

func (l *launcher) waitReady(t *testing.T) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !l.stdout.has(": ready in ") {
		select {
		case <-l.done:
			t.Fatalf("endpoint exited (%v) before ready:\nstdout:\n%s\nstderr:\n%s", l.err, l.stdout, l.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(t0) > 3*time.Minute {
			t.Fatalf("not ready after 3 minutes:\n%s\n%s", l.stdout, l.stderr)
		}
	}
	return time.Since(t0)
}

// wait returns the exit status once the launcher is gone.
func (l *launcher) wait(t *testing.T, d time.Duration) int {
	t.Helper()
	select {
	case <-l.done:
	case <-time.After(d):
		t.Fatalf("endpoint still running after %v:\n%s", d, l.stderr)
	}
	if l.err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(l.err, &ee) {
		return ee.ExitCode()
	}
	t.Fatal(l.err)
	return -1
}

func assertStateClean(t *testing.T, dir qemulaunch.StateDir) {
	t.Helper()
	ents, _ := os.ReadDir(string(dir))
	for _, e := range ents {
		switch e.Name() {
		case "console.log", "console.log.1", "health", "restarts":
		default:
			t.Errorf("state dir: %s left behind", e.Name())
		}
	}
	if pids, _ := ektest.ProcessesMatching("qemu-system", string(dir)); len(pids) > 0 {
		t.Errorf("QEMU processes left: %v", pids)
	}
}

const user, pass = "antidote", "antidotepassword"

// The must-show run: tiny image through `endpoint run` inside a container
// namespace; management SSH on eth0's address; the lesson share; eth1
// veth-paired to a peer namespace reaching the guest's eth1 through the
// TAP; LLDP crossing (mirred); console and health; SIGTERM powers the guest
// off within the grace period with a clean overlay.
func TestRunDataPlane(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	for _, mode := range []string{"mirred", "bridge"} {
		t.Run(mode, func(t *testing.T) {
			c := qemulaunchtest.NewContainer(t, 1)
			lesson := t.TempDir()
			os.WriteFile(filepath.Join(lesson, "topology.txt"), []byte("r1 -- r2\n"), 0o644)
			name := "ep-" + mode
			l := startLauncher(t, c.NS, "--image", im.Dir, "--lesson", lesson, "--name", name,
				"--forward", "22", "--stitch", mode, "--interfaces", "1", "--keep-overlay", "--grace", "30s")
			l.waitReady(t)

			mgmt := net.JoinHostPort(c.Eth0Addr.String(), "22")
			if out := qemulaunchtest.SSH(t, "", mgmt, user, pass, "cat /antidote/topology.txt; hostname", nil); out != "r1 -- r2\n"+name+"\n" {
				t.Fatalf("guest said %q", out)
			}
			qemulaunchtest.SSH(t, "", mgmt, user, pass, "sudo ip addr add 192.0.2.2/24 dev eth1 && sudo ip link set eth1 up", nil)
			// From the peer namespace, through eth1 and the TAP, to the guest.
			if out := qemulaunchtest.SSH(t, c.PeerNS, "192.0.2.2:22", user, pass, "hostname", nil); out != name+"\n" {
				t.Fatalf("via eth1 the guest said %q", out)
			}
			if mode == "mirred" {
				lldpCrosses(t, c, mgmt)
			}
			// The console socket replays history to an attaching client.
			bin, _ := binaries(t)
			ctx, cancel := context.WithTimeout(context.Background(), 4*time.Second)
			defer cancel()
			out, _ := exec.CommandContext(ctx, bin, "console", "--state", string(l.state)).Output()
			if !bytes.Contains(out, []byte("endpointkit: ready")) {
				t.Errorf("console attach showed %q", out)
			}
			if out, err := exec.Command(bin, "health", "--state", string(l.state)).Output(); err != nil || !strings.HasPrefix(string(out), "ready") {
				t.Errorf("health: %s %v", out, err)
			}
			nicAddedAndRemoved(t, bin, c, l.state, mgmt)

			t0 := time.Now()
			l.cmd.Process.Signal(syscall.SIGTERM)
			if code := l.wait(t, 2*time.Minute); code != 0 {
				t.Fatalf("exit %d after SIGTERM:\n%s", code, l.stderr)
			}
			if d := time.Since(t0); d > 30*time.Second {
				t.Errorf("stop took %v, over the 30s grace", d)
			}
			if !l.stderr.has("stopped (guest-shutdown)") {
				t.Errorf("guest did not power off by itself:\n%s", l.stderr)
			}
			qemulaunchtest.AssertClean(t, c.NS)
		})
	}
}

// lldpCrosses runs a receiver on the guest's eth1 and sends LLDP frames
// into the peer end of eth1 until one arrives.
func lldpCrosses(t *testing.T, c *qemulaunchtest.Container, mgmt string) {
	_, recv := binaries(t)
	f, err := os.Open(recv)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	qemulaunchtest.SSH(t, "", mgmt, user, pass, "cat > /tmp/lldprecv && chmod 755 /tmp/lldprecv", f)
	client, err := qemulaunchtest.Dial("", mgmt, user, pass)
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	s, _ := client.NewSession()
	defer s.Close()
	stdout, _ := s.StdoutPipe()
	var stderr bytes.Buffer
	s.Stderr = &stderr
	if err := s.Start("sudo /tmp/lldprecv eth1"); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 4)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	if l := <-lines; l != "listening" {
		t.Fatalf("lldprecv: %q %s", l, stderr.String())
	}
	token := make([]byte, 8)
	rand.Read(token)
	frame := append([]byte{0x01, 0x80, 0xc2, 0x00, 0x00, 0x0e, 0x02, 0xee, 0, 0, 0, 1, 0x88, 0xcc}, []byte("endpointkit-test")...)
	frame = append(frame, token...)
	for len(frame) < 60 {
		frame = append(frame, 0)
	}
	var fd int
	err = nsutil.Do(c.PeerNS, func() error {
		ifi, err := net.InterfaceByName("p1")
		if err != nil {
			return err
		}
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: 0, Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	deadline := time.After(30 * time.Second)
	for {
		unix.Write(fd, frame)
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("lldprecv ended: %s", stderr.String())
			}
			if !strings.Contains(l, hex.EncodeToString(token)) {
				t.Fatalf("guest received a different frame: %s", l)
			}
			return
		case <-deadline:
			t.Fatal("no LLDP frame reached the guest's eth1")
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SIGTERM on an image with a disk: the guest powers off within the grace
// period and the overlay it wrote to checks clean; the base is untouched.
// (The tiny image plus a scratch base disk, so the test needs no
// debootstrap build.)
func TestRunStopDiskImage(t *testing.T) {
	ektest.RequireQEMU(t)
	im := qemulaunchtest.WithScratchDisk(t, imagetest.Tiny(t))
	base := im.Path(im.Manifest.Disk)
	before, err := os.Stat(base)
	if err != nil {
		t.Fatal(err)
	}
	c := qemulaunchtest.NewContainer(t, 0)
	l := startLauncher(t, c.NS, "--image", im.Dir, "--name", "ep-disk", "--forward", "22", "--keep-overlay", "--grace", "60s")
	l.waitReady(t)
	mgmt := net.JoinHostPort(c.Eth0Addr.String(), "22")
	qemulaunchtest.SSH(t, "", mgmt, user, pass, "sudo dd if=/dev/urandom of=/dev/vda bs=1M count=16 2>/dev/null && echo ok", nil)
	t0 := time.Now()
	l.cmd.Process.Signal(syscall.SIGTERM)
	if code := l.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit %d after SIGTERM:\n%s", code, l.stderr)
	}
	if d := time.Since(t0); d > 60*time.Second || !l.stderr.has("stopped (guest-shutdown)") {
		t.Errorf("guest did not power off within the grace period (%v):\n%s", d, l.stderr)
	}
	if err := qemulaunch.CheckOverlay(context.Background(), l.state.Overlay()); err != nil {
		t.Errorf("overlay after SIGTERM: %v", err)
	}
	if st, err := os.Stat(l.state.Overlay()); err != nil || st.Size() < 16<<20 {
		t.Errorf("overlay did not receive the guest's 16 MiB: %v %v", st, err)
	}
	if after, _ := os.Stat(base); !after.ModTime().Equal(before.ModTime()) || after.Size() != before.Size() {
		t.Errorf("base disk %s was written", base)
	}
	qemulaunchtest.AssertClean(t, c.NS)
}

// Ctrl-C in a terminal signals the whole foreground process group; QEMU
// must not get it (it would exit at once), the launcher turns it into a
// graceful poweroff.
func TestRunProcessGroupInterrupt(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 0)
	l := startLauncher(t, c.NS, "--image", im.Dir, "--name", "ep-intr", "--forward", "22")
	l.waitReady(t)
	syscall.Kill(-l.cmd.Process.Pid, syscall.SIGINT)
	if code := l.wait(t, time.Minute); code != 0 || !l.stderr.has("stopped (guest-shutdown)") {
		t.Fatalf("exit %d:\n%s", code, l.stderr)
	}
}

// kill -9 of QEMU with --restart never: endpoint notices, exits with
// "died" and cleans up.
func TestRunQEMUKilled(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	c := qemulaunchtest.NewContainer(t, 1)
	l := startLauncher(t, c.NS, "--image", im.Dir, "--name", "ep-kill", "--forward", "22", "--restart", "never")
	l.waitReady(t)
	b, err := os.ReadFile(l.state.QEMUPID())
	if err != nil {
		t.Fatal(err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	syscall.Kill(pid, syscall.SIGKILL)
	if code := l.wait(t, 30*time.Second); code != qemulaunch.ExitCodeDied {
		t.Fatalf("exit %d, want %d:\n%s", code, qemulaunch.ExitCodeDied, l.stderr)
	}
	if !l.stderr.has("died") || !l.stderr.has("console tail") {
		t.Errorf("stderr does not explain:\n%s", l.stderr)
	}
	qemulaunchtest.AssertClean(t, c.NS)
	if _, err := os.Stat(l.state.ConsoleLog()); err != nil {
		t.Errorf("after a failure the state directory keeps the console log: %v", err)
	}
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// nicAddedAndRemoved asks the running launcher (`endpoint nic`) for a NIC
// behind a new eth2, reaches the guest from the peer over it, and removes
// it again: the guest's eth2 is gone.
func nicAddedAndRemoved(t *testing.T, bin string, c *qemulaunchtest.Container, state qemulaunch.StateDir, mgmt string) {
	t.Helper()
	qemulaunchtest.VethPair(t, c.NS, "eth2", c.PeerNS, "p2")
	mac := qemulaunch.DeriveMAC("nic-test", 2).String()
	out, err := exec.Command(bin, "nic", "add", "--state", string(state), "--interface", "eth2", "--mac", mac).Output()
	var nic qemulaunch.NIC
	if err != nil || json.Unmarshal(out, &nic) != nil || nic.Interface != "eth2" || nic.MAC != mac || nic.PCI == "" {
		t.Fatalf("endpoint nic add: %v\n%s", err, out)
	}
	qemulaunchtest.SSH(t, "", mgmt, user, pass, `for i in $(seq 100); do [ -e /sys/class/net/eth2 ] && break; sleep 0.1; done; `+
		`sudo ip addr add 198.51.100.2/24 dev eth2 && sudo ip link set eth2 up`, nil)
	ph, _ := nsutil.Handle(c.PeerNS)
	defer ph.Close()
	p2, _ := ph.LinkByName("p2")
	ph.AddrAdd(p2, &netlink.Addr{IPNet: &net.IPNet{IP: net.ParseIP("198.51.100.1"), Mask: net.CIDRMask(24, 32)}})
	if out := qemulaunchtest.SSH(t, c.PeerNS, "198.51.100.2:22", user, pass, "cat /sys/class/net/eth2/address", nil); strings.TrimSpace(out) != mac {
		t.Errorf("via the added NIC the guest said %q", out)
	}
	if out, err := exec.Command(bin, "nic", "del", "--state", string(state), "--interface", "eth2").CombinedOutput(); err != nil {
		t.Fatalf("endpoint nic del: %v\n%s", err, out)
	}
	if out := qemulaunchtest.SSH(t, "", mgmt, user, pass, "ls /sys/class/net", nil); strings.Contains(out, "eth2") {
		t.Errorf("the guest still has eth2 after nic del: %q", out)
	}
}
