package endpointkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/vishvananda/netlink"
)

// The soak (`make soak`; a few cycles in `make test`): cycles of up → one
// random fault → recovery (or, where recovery is not the point, down),
// then down, asserting after every cycle that nothing of the instance is
// left. EK_SOAK_N sets the cycles (default 3), EK_SOAK_SEED the fault
// sequence (default: random, logged).

const (
	soakChildEnv = "EK_SOAK_CHILD" // set: the test binary is the soak's `lesson up`
	soakDefaultN = 3
)

// soakFault is one fault: it runs against an instance that is up (except
// up-killed, which makes its own) and says whether the instance recovered.
type soakFault struct {
	name string
	run  func(ctx context.Context, t *testing.T, s *soakCycle) (recovered bool, err error)
}

// soakCycle is one cycle's instance.
type soakCycle struct {
	opts Options
	dir  string
	inst *Instance
}

func soakFaults() []soakFault {
	return []soakFault{
		{"qemu-sigkill", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			e := s.endpoint("a")
			syscall.Kill(qemuPIDOf(e), syscall.SIGKILL)
			return s.healed(ctx, t, e)
		}},
		{"launcher-sigkill", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			e := s.endpoint("b")
			syscall.Kill(e.PID, syscall.SIGKILL)
			return s.healed(ctx, t, e)
		}},
		{"netns-deleted", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			e := s.endpoint("a")
			if err := nsutil.Delete(e.Namespace); err != nil {
				return false, err
			}
			return s.healed(ctx, t, e)
		}},
		{"veth-deleted", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			e := s.endpoint("b")
			if out, err := exec.Command("ip", "-n", e.Namespace, "link", "del", "eth1").CombinedOutput(); err != nil {
				return false, fmt.Errorf("ip link del: %v: %s", err, out)
			}
			return s.linksWork(ctx, time.Minute)
		}},
		{"sshd-stopped", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			// The guest's SSH server is killed (the shell's parent); the
			// tiny agent starts it again, and the stage is applied anew.
			if _, err := s.inst.Run(ctx, "a", "sudo kill -9 $PPID"); err == nil {
				return false, fmt.Errorf("the guest's SSH server survived kill -9")
			}
			if err := s.inst.Configure(ctx, 0); err != nil {
				return false, err
			}
			return s.linksWork(ctx, 30*time.Second)
		}},
		{"up-sigkilled", func(ctx context.Context, t *testing.T, s *soakCycle) (bool, error) {
			return s.upKilled(ctx, t)
		}},
	}
}

func soakN() int {
	if n, err := strconv.Atoi(os.Getenv("EK_SOAK_N")); err == nil && n > 0 {
		return n
	}
	return soakDefaultN
}

func TestSoak(t *testing.T) {
	requireLaunch(t)
	n := soakN()
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("EK_SOAK_SEED"), 10, 64); err == nil {
		seed = v
	}
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	faults := soakFaults()
	base := testOptions(t, tinyImages(t))
	base.Images.Build.CacheDir = filepath.Join(base.StateRoot, "no-images", "cache") // private: only the cycles' own temporaries count
	// A private TMPDIR for everything the cycles start (Up, launchers,
	// healers, configurators inherit it): what is left in it is ours.
	tmp, err := os.MkdirTemp("", "ek-soak-tmp-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(tmp) })
	t.Setenv("TMPDIR", tmp)
	t.Logf("soak: %d cycles, seed %d (EK_SOAK_SEED)", n, seed)
	recoveries, leaks := map[string]int{}, 0
	counts := map[string]int{}
	start := time.Now()
	for c := 0; c < n; c++ {
		f := faults[rng.IntN(len(faults))]
		if c < len(faults) && n >= len(faults) {
			f = faults[c] // every fault at least once
		}
		counts[f.name]++
		opts := base
		opts.Instance = ektest.Name("eks")
		s := &soakCycle{opts: opts, dir: InstanceDir(opts.StateRoot, opts.Instance)}
		before := soakTemporaries(opts.Images.Build.CacheDir)
		t0 := time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		recovered, err := s.cycle(ctx, t, f)
		cancel()
		dctx, dcancel := context.WithTimeout(context.Background(), 3*time.Minute)
		if derr := Teardown(dctx, s.dir, opts); derr != nil {
			t.Errorf("cycle %d (%s): down: %v", c, f.name, derr)
		}
		dcancel()
		left := soakLeftovers(opts, before)
		leaks += len(left)
		if recovered {
			recoveries[f.name]++
		}
		if err != nil {
			t.Errorf("cycle %d (%s): %v", c, f.name, err)
		}
		if len(left) > 0 {
			t.Errorf("cycle %d (%s): left behind: %s", c, f.name, strings.Join(left, "; "))
		}
		t.Logf("soak cycle %d: %s: recovered %v, %d leaks, %.1fs", c, f.name, recovered, len(left), time.Since(t0).Seconds())
	}
	mins := time.Since(start).Minutes()
	total := 0
	for _, r := range recoveries {
		total += r
	}
	t.Logf("soak: %d cycles in %.1f min (%.2f cycles/min), %d recoveries, %d leaks; faults %v, recovered %v; load %s",
		n, mins, float64(n)/mins, total, leaks, counts, recoveries, loadAverage())
}

// cycle brings the instance up (but for up-sigkilled) and applies f.
func (s *soakCycle) cycle(ctx context.Context, t *testing.T, f soakFault) (bool, error) {
	if f.name != "up-sigkilled" {
		inst, err := Up(ctx, pairLesson(t), s.opts)
		if err != nil {
			return false, fmt.Errorf("up: %w", err)
		}
		s.inst = inst
	}
	return f.run(ctx, t, s)
}

func (s *soakCycle) endpoint(name string) RunningEndpoint {
	s.inst.reload()
	e, _ := s.inst.Endpoint(name)
	return e
}

// healed waits until the healer configured a new boot of e, then checks
// the link.
func (s *soakCycle) healed(ctx context.Context, t *testing.T, e RunningEndpoint) (bool, error) {
	deadline := time.Now().Add(5 * time.Minute)
	for time.Now().Before(deadline) {
		now := s.endpoint(e.Name)
		if now.BootID != e.BootID && now.State == StateConfigured {
			return s.linksWork(ctx, 30*time.Second)
		}
		time.Sleep(100 * time.Millisecond)
	}
	heal, _ := os.ReadFile(filepath.Join(s.dir, healerLog))
	return false, fmt.Errorf("%s not configured again in 5 min; healer log:\n%s", e.Name, heal)
}

// linksWork retries CheckLinks until every check passes or d has passed.
func (s *soakCycle) linksWork(ctx context.Context, d time.Duration) (bool, error) {
	deadline := time.Now().Add(d)
	for {
		checks, err := s.inst.CheckLinks(ctx)
		if err != nil {
			return false, err
		}
		var bad []string
		for _, c := range checks {
			if !c.OK {
				bad = append(bad, c.Err.Error())
			}
		}
		if len(bad) == 0 {
			return true, nil
		}
		if time.Now().After(deadline) {
			return false, fmt.Errorf("links: %s", strings.Join(bad, "; "))
		}
		time.Sleep(time.Second)
	}
}

// upKilled runs `lesson up` (this test binary as a child running Up) and
// SIGKILLs it at a random point; an instance it left is shown abandoned
// (or, when Up had finished, is whole).
func (s *soakCycle) upKilled(ctx context.Context, t *testing.T) (bool, error) {
	cfg, _ := json.Marshal(soakChildConfig{Lesson: pairLesson(t), StateRoot: s.opts.StateRoot, Instance: s.opts.Instance,
		Launcher: s.opts.Launcher, Images: s.opts.Images.Images})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), soakChildEnv+"="+string(cfg))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return false, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	delay := time.Duration(rand.Int64N(int64(20 * time.Second)))
	select {
	case err := <-done:
		if err != nil {
			return false, fmt.Errorf("up ended by itself: %v", err)
		}
	case <-time.After(delay):
		cmd.Process.Kill()
		<-done
	}
	inst, err := Open(s.dir, s.opts)
	if err != nil {
		return false, nil // killed before the record: nothing to show
	}
	s.inst = inst
	if inst.Abandoned() {
		if err := inst.Configure(ctx, 0); err == nil || !strings.Contains(err.Error(), "lesson down --instance "+inst.Name) {
			return false, fmt.Errorf("abandoned instance (killed after %v): configure says %v; want how to remove it", delay, err)
		}
		return false, nil
	}
	return s.linksWork(ctx, time.Minute)
}

// soakChildConfig is what the child `lesson up` is told.
type soakChildConfig struct {
	Lesson, StateRoot, Instance, Launcher string
	Images                                map[string]string
}

// soakChild runs Up as the soak's child process.
func soakChild() int {
	var c soakChildConfig
	if err := json.Unmarshal([]byte(os.Getenv(soakChildEnv)), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, err := Up(context.Background(), c.Lesson, Options{Instance: c.Instance, StateRoot: c.StateRoot, Launcher: c.Launcher,
		Accel: "tcg", Images: Catalog{Images: c.Images, Dirs: []string{filepath.Join(c.StateRoot, "no-images")}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func qemuPIDOf(e RunningEndpoint) int {
	b, _ := os.ReadFile(qemulaunch.StateDir(e.StateDir).QEMUPID())
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// soakTemporaries lists the temporary files the cycles' processes may
// leave: anything in the private TMPDIR, temporaries in the (private)
// image cache. (The shared test cache would count other engineers' builds.)
func soakTemporaries(cacheDir string) map[string]bool {
	out := map[string]bool{}
	for _, pat := range []string{filepath.Join(os.TempDir(), "*"), filepath.Join(cacheDir, "*", ".*"), filepath.Join(cacheDir, "*", "*.tmp*")} {
		ms, _ := filepath.Glob(pat)
		for _, m := range ms {
			out[m] = true
		}
	}
	return out
}

// soakLeftovers lists everything of the cycle's instance still there:
// namespaces, host link, nftables table, launcher/QEMU/healer processes,
// netns mounts, files under the state root, links with the launcher's
// alias in the host namespace, and temporaries not there before.
func soakLeftovers(opts Options, before map[string]bool) []string {
	sum := sha256.Sum256([]byte("endpointkit/" + opts.Instance))
	left := leftovers(opts, "ek"+hex.EncodeToString(sum[:3]))
	if out, err := exec.Command("nft", "list", "tables").Output(); err == nil && strings.Contains(string(out), wiringTable(opts.Instance)) {
		left = append(left, "nftables table "+wiringTable(opts.Instance))
	}
	if raw, err := os.ReadFile("/proc/mounts"); err == nil {
		for _, l := range strings.Split(string(raw), "\n") {
			if strings.Contains(l, "ek-"+opts.Instance) {
				left = append(left, "mount "+strings.Fields(l)[1])
			}
		}
	}
	if ents, err := os.ReadDir(opts.StateRoot); err == nil {
		for _, e := range ents {
			if e.Name() != "no-images" && !strings.HasSuffix(e.Name(), ".lock") {
				left = append(left, "state root: "+e.Name())
			}
		}
	}
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Alias, "endpointkit:"+opts.Instance) {
			left = append(left, "host link "+l.Attrs().Name)
		}
	}
	for f := range soakTemporaries(opts.Images.Build.CacheDir) {
		if !before[f] {
			left = append(left, "temporary "+f)
		}
	}
	return left
}

func wiringTable(instance string) string { return "ek-" + instance }

func loadAverage() string {
	raw, _ := os.ReadFile("/proc/loadavg")
	return strings.Join(strings.Fields(string(raw))[:3], " ")
}
