package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// fakeRuntime places nothing: it records what the orchestration asks and
// answers as a cluster runtime would (addresses on 127.0.0.1, logs that
// are not files), so the orchestration is shown to assume nothing local.
type fakeRuntime struct {
	mu       sync.Mutex
	placed   *Placement
	notReady map[string]string // endpoint → why Ready fails
	removed  []time.Duration   // grace of each Remove
	reached  []string
	// restarted lists the Restart calls.
	restarted []string
}

func (f *fakeRuntime) Place(_ context.Context, p *Placement) error {
	f.placed = p
	for k, el := range p.Endpoints {
		if err := p.Record(el.Endpoint.Name, func(e *RunningEndpoint) { e.Namespace = "fake/" + e.Name }); err != nil {
			return err
		}
		p.Report(StepBoot, el.Endpoint.Name, fmt.Sprintf("%s scheduled (%d)", el.Endpoint.Name, k))
	}
	return nil
}

func (f *fakeRuntime) Ready(ctx context.Context, ep RunningEndpoint) error {
	if why, ok := f.notReady[ep.Name]; ok {
		return errors.New(why)
	}
	return nil
}

func (f *fakeRuntime) Reach(_ context.Context, ep RunningEndpoint, guestPort int) (netip.AddrPort, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reached = append(f.reached, fmt.Sprintf("%s:%d", ep.Name, guestPort))
	return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(40000+guestPort)), nil
}

func (f *fakeRuntime) Console(context.Context, RunningEndpoint) (io.ReadWriteCloser, error) {
	return nil, errors.New("no console here")
}

func (f *fakeRuntime) Logs(_ context.Context, ep RunningEndpoint) Logs {
	return Logs{Console: "console of " + ep.Name, Launcher: "launcher of " + ep.Name, Where: "kubectl logs " + ep.Name}
}

func (f *fakeRuntime) Observe(_ context.Context, ep RunningEndpoint) Observation {
	return Observation{Running: true, Health: qemulaunch.HealthReady}
}

func (f *fakeRuntime) Restart(_ context.Context, p *Placement, ep RunningEndpoint, reset bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.restarted = append(f.restarted, fmt.Sprintf("%s reset=%v", ep.Name, reset))
	return nil
}

func (f *fakeRuntime) Repair(context.Context, *Placement) error { return nil }

func (f *fakeRuntime) Remove(_ context.Context, dir string, grace time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, grace)
	return nil
}

// Up, Status and Down go through Options.Runtime: the launches it is
// given follow the launcher contract, presentations and known_hosts use
// the addresses Reach gives, Down and a failed Up call Remove.
func TestUpThroughRuntime(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, tinyImages(t))
	opts.Stage = -1 // nothing to reach over SSH: the fake runs no guest
	rt := &fakeRuntime{}
	opts.Runtime = rt
	inst, err := Up(context.Background(), pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	if n := len(rt.placed.Endpoints); n != 2 {
		t.Fatalf("placed %d endpoints, want 2", n)
	}
	l := rt.placed.Endpoints[0].Launch
	if l.Name != "a" || l.Lesson != inst.LessonDir || l.Accel != qemulaunch.AccelTCG || l.Interfaces != 1 || len(l.MACs) != 2 || l.Validate() != nil {
		t.Errorf("launch of a: %+v", l)
	}
	a, _ := inst.Endpoint("a")
	if a.Namespace != "fake/a" || a.State != StateReady || len(a.Presentations) != 1 ||
		!strings.HasSuffix(a.Presentations[0].Access, "-p 40022 antidote@127.0.0.1") {
		t.Errorf("a: %+v", a)
	}
	kh, err := os.ReadFile(filepath.Join(inst.Dir, KnownHostsFile))
	if err != nil || !strings.HasPrefix(string(kh), "[127.0.0.1]:40022 ") {
		t.Errorf("known_hosts %q (%v): want the pinned keys at the reached address", kh, err)
	}
	reopened, err := Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range reopened.Status(context.Background()) {
		if e.State != StateReady {
			t.Errorf("status of %s: %s", e.Name, e.State)
		}
	}
	if _, err := reopened.Console(context.Background(), "a"); err == nil || !strings.Contains(err.Error(), "no console here") {
		t.Errorf("Console did not go through the runtime: %v", err)
	}
	if logs, err := reopened.Logs(context.Background(), "b"); err != nil || logs.Where != "kubectl logs b" {
		t.Errorf("Logs did not go through the runtime: %+v %v", logs, err)
	}
	if _, err := reopened.Logs(context.Background(), "nope"); err == nil {
		t.Error("Logs of an unknown endpoint")
	}
	if err := reopened.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(rt.removed) != 1 || rt.removed[0] <= 0 {
		t.Errorf("Down: Remove calls %v; want one, with a grace", rt.removed)
	}
	mustNotExist(t, opts)
}

// A boot the runtime reports failed is a *BootError quoting the runtime's
// logs, and everything is removed at once (no grace).
func TestUpRuntimeBootFailure(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, tinyImages(t))
	opts.Stage = -1
	rt := &fakeRuntime{notReady: map[string]string{"b": "pod b: CrashLoopBackOff"}}
	opts.Runtime = rt
	_, err := Up(context.Background(), pairLesson(t), opts)
	var be *BootError
	if !errors.As(err, &be) || be.Endpoint != "b" || be.Reason != "pod b: CrashLoopBackOff" ||
		be.Console != "console of b" || be.LogFile != "kubectl logs b" {
		t.Fatalf("Up: %#v; want b's *BootError with the runtime's logs", err)
	}
	if len(rt.removed) != 1 || rt.removed[0] != 0 {
		t.Errorf("Remove calls %v; want one, killing at once", rt.removed)
	}
	mustNotExist(t, opts)
}

// A runtime that cannot change links of a running instance (no
// LinkChanger) has AddLink and RemoveLink refused by name, before anything
// else is looked at.
func TestLiveLinksRefusedByRuntime(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, tinyImages(t))
	opts.Stage = -1
	rt := &fakeRuntime{}
	opts.Runtime = rt
	inst, err := Up(context.Background(), pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	defer inst.Down(context.Background())
	if _, err := inst.AddLink(context.Background(), "a", "b", netip.Prefix{}); !errors.Is(err, ErrLiveLinks) || !strings.Contains(err.Error(), "fakeRuntime") {
		t.Errorf("AddLink: %v; want ErrLiveLinks naming the runtime", err)
	}
	if _, err := inst.RemoveLink(context.Background(), "a", "eth1"); !errors.Is(err, ErrLiveLinks) {
		t.Errorf("RemoveLink: %v; want ErrLiveLinks", err)
	}
	if len(inst.Links.Added)+len(inst.Links.Removed) != 0 {
		t.Errorf("refused changes were recorded: %+v", inst.Links)
	}
}

// recordedRuntime is a fakeRuntime that says, in the instance record,
// where it placed the instance (Recorded).
type recordedRuntime struct{ fakeRuntime }

func (*recordedRuntime) RuntimeRecord() RuntimeRecord {
	return RuntimeRecord{Kind: "fake", Kubeconfig: "/k/config", Namespace: "ns"}
}

// The runtime's record survives every write of the instance record (each
// endpoint's update re-reads it from disk): a later process finds the
// runtime through RuntimeFor, and without one is told it cannot reach the
// instance rather than looking for it on this machine.
func TestRuntimeRecordReopened(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, tinyImages(t))
	opts.Stage = -1
	rt := &recordedRuntime{}
	opts.Runtime = rt
	inst, err := Up(context.Background(), pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	var got []RuntimeRecord
	reopen := opts
	reopen.Runtime = nil
	reopen.RuntimeFor = func(rec RuntimeRecord) (Runtime, error) { got = append(got, rec); return rt, nil }
	again, err := Open(inst.Dir, reopen)
	if err != nil {
		t.Fatal(err)
	}
	if want := rt.RuntimeRecord(); len(got) != 1 || got[0] != want || again.Runtime == nil || *again.Runtime != want {
		t.Errorf("RuntimeFor given %+v, record says %+v; want %+v", got, again.Runtime, want)
	}
	reopen.RuntimeFor = nil
	if _, err := Open(inst.Dir, reopen); !errors.Is(err, ErrRuntime) || !strings.Contains(err.Error(), "/k/config") {
		t.Errorf("Open without RuntimeFor: %v; want ErrRuntime naming the kubeconfig", err)
	}
	if err := again.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	mustNotExist(t, opts)
}

// hostKeyRuntime is a fakeRuntime whose launchers keep their state
// elsewhere (StateDir a path in the "pod") and that says which host keys
// to pin (HostKeyer).
type hostKeyRuntime struct {
	fakeRuntime
	podState string
	keys     []vmimage.HostKey
	err      error
	asked    []string // endpoint and manifest identity of each HostKeys call
}

func (h *hostKeyRuntime) Place(ctx context.Context, p *Placement) error {
	if err := h.fakeRuntime.Place(ctx, p); err != nil {
		return err
	}
	for _, el := range p.Endpoints {
		if err := p.Record(el.Endpoint.Name, func(e *RunningEndpoint) { e.StateDir = filepath.Join(h.podState, e.Name) }); err != nil {
			return err
		}
	}
	return nil
}

func (h *hostKeyRuntime) HostKeys(_ context.Context, ep RunningEndpoint, m vmimage.Manifest) ([]vmimage.HostKey, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.asked = append(h.asked, ep.Name+" "+m.Identity)
	return h.keys, h.err
}

// A runtime that is a HostKeyer says which keys are pinned: known_hosts
// has its keys for an image that takes a per-instance identity, and
// nothing is made at the launcher's state directory (which is not on this
// machine); its error fails configuration and DialSSH of that endpoint,
// named, before anything is dialled.
func TestHostKeysThroughRuntime(t *testing.T) {
	ektest.RequireTool(t, "go")
	dir, _ := tinyWith(t, func(m *vmimage.Manifest) { m.HostKeys, m.Identity = nil, vmimage.IdentityFWCfg })
	opts := testOptions(t, map[string]string{"tiny": dir})
	opts.Stage = -1
	id, err := vmimage.NewIdentity("a")
	if err != nil {
		t.Fatal(err)
	}
	rt := &hostKeyRuntime{podState: filepath.Join(t.TempDir(), "in-pod"), keys: id.HostKeys()}
	opts.Runtime = rt
	ctx := context.Background()
	inst, err := Up(ctx, pairLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	defer inst.Down(ctx)
	kh, err := os.ReadFile(filepath.Join(inst.Dir, KnownHostsFile))
	for _, k := range id.HostKeys() {
		if err != nil || !strings.Contains(string(kh), "[127.0.0.1]:40022 "+k.PublicKey+"\n") {
			t.Errorf("known_hosts %q (%v) lacks the runtime's key %s", kh, err, k.PublicKey)
		}
	}
	if !slices.Contains(rt.asked, "a "+vmimage.IdentityFWCfg) || !slices.Contains(rt.asked, "b "+vmimage.IdentityFWCfg) {
		t.Errorf("HostKeys asked for %q; want a and b with their image's manifest", rt.asked)
	}
	if _, err := os.Stat(rt.podState); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("something was made at the launchers' state directories on this machine: %v", err)
	}

	rt.err = errors.New("pod ns/a: exec refused")
	reached := len(rt.reached)
	var ce *ConfigureError
	if err := inst.Configure(ctx, 0); !errors.As(err, &ce) || len(ce.Failed) != 2 || !strings.Contains(err.Error(), "endpoint a: host keys: pod ns/a: exec refused") {
		t.Errorf("Configure: %v; want both endpoints failed on their host keys, named", err)
	}
	if _, err := inst.DialSSH(ctx, "b"); err == nil || !strings.Contains(err.Error(), "endpoint b: host keys") {
		t.Errorf("DialSSH: %v; want the host-key error", err)
	}
	if len(rt.reached) != reached {
		t.Errorf("reached %v after the host keys failed", rt.reached[reached:])
	}
}
