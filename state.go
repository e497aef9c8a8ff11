package endpointkit

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
	"github.com/google/renameio/v2"
	"golang.org/x/sys/unix"
)

// StateFile is the instance record inside an instance's state directory.
const StateFile = "instance.json"

// KnownHostsFile, inside an instance's state directory, lists every
// endpoint's pinned SSH host keys by management address, for ssh's
// UserKnownHostsFile option.
const KnownHostsFile = "known_hosts"

// stateVersion is the version of the instance record format.
const stateVersion = 1

// Instance is one lesson running on this machine: its endpoints' VMs, the
// namespaces and links between them, and a state directory from which Open
// and Teardown work after the process that started it is gone.
//
// Its fields are a snapshot, updated by the methods; an Instance is not
// safe for concurrent use.
type Instance struct {
	Version   int              `json:"version"`
	Name      string           `json:"instance"`
	Lesson    string           `json:"lesson"` // slug
	LessonDir string           `json:"lessonDir"`
	Dir       string           `json:"stateDir"`
	Accel     qemulaunch.Accel `json:"accel"`
	// Stage is the stage last asked for (-1: none yet); each endpoint's
	// own Stage says whether it got there.
	Stage     int               `json:"stage"`
	Created   time.Time         `json:"created"`
	Endpoints []RunningEndpoint `json:"endpoints"`
	// Runtime says which runtime placed the instance; nil is this
	// machine's (see [Recorded]).
	Runtime *RuntimeRecord `json:"runtime,omitempty"`
	// Restart is the instance's restart policy (Options.Restart): when an
	// endpoint that ended unasked is started again.
	Restart qemulaunch.RestartPolicy `json:"restart,omitempty"`
	// Placing is true while Up places the instance, UpPID the process
	// that runs Up: a record still placing whose Up process is gone is an
	// abandoned Up (Abandoned), to be removed with Teardown.
	Placing bool `json:"placing,omitempty"`
	UpPID   int  `json:"upPid,omitempty"`
	// HealerPID is the instance's healer process (see Heal), 0 when none
	// was started.
	HealerPID int `json:"healerPid,omitempty"`
	// Links are the links added to the running instance and the lesson's
	// links removed from it (AddLink, RemoveLink): the instance's links are
	// the lesson's with these changes.
	Links LinkChanges `json:"links,omitzero"`

	opts Options
	rt   Runtime
	mu   sync.Mutex // serialises updates from Up's per-endpoint goroutines
	// started is when Up's runtime started each endpoint's launcher.
	started map[string]time.Time
}

// RunState is where a running endpoint is in its life.
type RunState string

// Run states.
const (
	StateStarting     RunState = "starting"      // launcher started, guest booting
	StateReady        RunState = "ready"         // answers; not configured (yet)
	StateConfiguring  RunState = "configuring"   // a stage is being applied
	StateConfigured   RunState = "configured"    // Stage applied
	StateConfigFailed RunState = "config-failed" // the last stage failed on it (Error says why); still running
	StateRestarting   RunState = "restarting"    // its VM ended and is being started again (Error: how it ended)
	StateFailed       RunState = "failed"        // did not boot, or its VM ended
	StateDown         RunState = "down"          // its launcher is gone
)

// RunningEndpoint is the record of one endpoint of an Instance as it
// runs: where the Runtime placed it, how to reach it, its RunState. (The
// same endpoint as the lesson writes it is a lessonmeta.Endpoint, as the
// model derives it an endpoint.Endpoint; see the package documentation.)
type RunningEndpoint struct {
	Name     string `json:"name"`
	Image    string `json:"image"`    // slug
	ImageDir string `json:"imageDir"` // built image directory
	// Namespace is the endpoint's network namespace (its "container"):
	// `ip netns exec NAMESPACE …`.
	Namespace string `json:"namespace"`
	// Address is the management address; the host reaches every forwarded
	// port there.
	Address       netip.Addr     `json:"address"`
	Ports         []Port         `json:"ports"`
	Presentations []Presentation `json:"presentations"`
	SSHUser       string         `json:"sshUser"`
	// StateDir is the launcher's state directory (qemulaunch.StateDir):
	// health, console.sock, console.log, qemu.pid, qmp.sock.
	StateDir string `json:"launcherState"`
	// IdentityFile is the endpoint's per-instance identity
	// (vmimage.Identity) on this machine, when a runtime whose launchers
	// run elsewhere made it here and handed it to the launcher (a
	// Kubernetes Secret); "" when the launcher keeps it in StateDir.
	IdentityFile  string `json:"identityFile,omitempty"`
	ConsoleSocket string `json:"consoleSocket"`
	Log           string `json:"log"` // the launcher's output
	PID           int    `json:"pid"` // the launcher's
	// Pod is the Kubernetes pod (NAMESPACE/NAME) a cluster runtime placed
	// the endpoint in; "" locally.
	Pod string `json:"pod,omitempty"`

	State RunState `json:"state"`
	Stage int      `json:"stage"` // last stage applied to it (-1: none)
	Error string   `json:"error,omitempty"`
	// Boot is the time from the launcher's start to ready; Configure the
	// time the last stage took on it.
	Boot      time.Duration `json:"bootNs"`
	Configure time.Duration `json:"configureNs"`
	// Restarts counts the times the endpoint's VM was started again after
	// Up (by its launcher in place, by the runtime, or on request);
	// LastExit says how it ended before the last one.
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit,omitempty"`
	// Replaced counts the restarts the runtime made by starting a new
	// launcher (its old one was gone); BootID names the boot State speaks
	// of (launcher pid and launcher restarts), so a healer sees a boot it
	// has not configured yet.
	Replaced int    `json:"replaced,omitempty"`
	BootID   string `json:"bootId,omitempty"`
}

// Port is a forwarded guest port, reachable at RunningEndpoint.Address:Host.
type Port struct {
	Guest int    `json:"guest"`
	Host  int    `json:"host"`
	Proto string `json:"proto"`
}

// Presentation is one way in for a learner, as the lesson declares it.
type Presentation struct {
	Name string `json:"name"`
	Type string `json:"type"` // ssh or http
	Port int    `json:"port"` // guest port
	// Access is how to reach it from this machine: an ssh command line or
	// an http URL.
	Access string `json:"access"`
}

// reload reads the record again from the state directory, where other
// processes (the instance's healer, another command) may have changed
// it; without a readable record it keeps what it has.
func (i *Instance) reload() {
	if i.Dir == "" {
		return
	}
	raw, err := os.ReadFile(filepath.Join(i.Dir, StateFile))
	d := &Instance{}
	if err != nil || json.Unmarshal(raw, d) != nil || d.Name != i.Name {
		return
	}
	d.Dir = i.Dir
	i.mu.Lock()
	defer i.mu.Unlock()
	i.adopt(d)
}

// Endpoint returns the named endpoint.
func (i *Instance) Endpoint(name string) (RunningEndpoint, bool) {
	for _, e := range i.Endpoints {
		if e.Name == name {
			return e, true
		}
	}
	return RunningEndpoint{}, false
}

// InstanceDir is the state directory of the named instance under root
// ("" = DefaultStateRoot).
func InstanceDir(root, name string) string {
	if root == "" {
		root = DefaultStateRoot
	}
	return filepath.Join(root, name)
}

// Open reattaches to a running instance from its state directory. opts
// supplies what the next calls use (Logger, Progress, ConfigTimeout,
// StopGrace, and the runtime: Runtime, else RuntimeFor of the record's);
// its other fields are ignored. The error wraps ErrNoInstance when dir
// holds no instance, ErrRuntime when the record names a runtime opts
// cannot give.
func Open(dir string, opts Options) (*Instance, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w (no %s)", dir, ErrNoInstance, StateFile)
	}
	if err != nil {
		return nil, err
	}
	inst := &Instance{}
	if err := json.Unmarshal(raw, inst); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	if inst.Version != stateVersion {
		return nil, fmt.Errorf("%s: instance record version %d; this endpointkit reads %d", filepath.Join(dir, StateFile), inst.Version, stateVersion)
	}
	if err := wiring.ValidInstance(inst.Name); err != nil {
		return nil, fmt.Errorf("%s: %w", filepath.Join(dir, StateFile), err)
	}
	inst.Dir = dir
	inst.opts = opts
	if inst.rt, err = opts.runtimeFor(inst.Name, inst.Runtime); err != nil {
		return nil, err
	}
	return inst, nil
}

// List returns the names of the instances under root ("" =
// DefaultStateRoot), sorted.
func List(root string) ([]string, error) {
	if root == "" {
		root = DefaultStateRoot
	}
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var names []string
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join(root, e.Name(), StateFile)); e.IsDir() && err == nil {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	return names, nil
}

// runtime is the runtime the instance runs on (Options.Runtime, else the
// local one), also for an Instance decoded from JSON rather than opened.
func (i *Instance) runtime() Runtime {
	if i.rt == nil {
		i.rt = i.opts.runtime()
	}
	return i.rt
}

// save writes the record as it is in memory (Up's first write).
func (i *Instance) save() error {
	return i.mutate(func(d *Instance) { d.adopt(i) })
}

// mutate changes the record: several processes write it (the command
// that runs, the instance's healer), so under an advisory lock on
// instance.lock it reads the record from disk, applies f, writes it back
// atomically and takes it as i's. Without a record on disk yet, f applies
// to i's.
func (i *Instance) mutate(f func(*Instance)) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	unlock, err := lockFile(filepath.Join(i.Dir, lockFileName))
	if err != nil {
		return fmt.Errorf("instance %s: state: %w", i.Name, err)
	}
	defer unlock()
	d := &Instance{}
	raw, err := os.ReadFile(filepath.Join(i.Dir, StateFile))
	if err != nil || json.Unmarshal(raw, d) != nil {
		d.adopt(i)
	}
	f(d)
	d.Version, d.Dir = stateVersion, i.Dir
	raw, err = json.MarshalIndent(d, "", "  ")
	if err != nil {
		return err
	}
	if err := renameio.WriteFile(filepath.Join(i.Dir, StateFile), append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("instance %s: state: %w", i.Name, err)
	}
	i.adopt(d)
	return nil
}

// adopt copies the record's fields of o into i.
func (i *Instance) adopt(o *Instance) {
	i.Version, i.Name, i.Lesson, i.LessonDir, i.Dir, i.Accel = o.Version, o.Name, o.Lesson, o.LessonDir, o.Dir, o.Accel
	i.Stage, i.Created, i.Restart, i.Placing, i.UpPID, i.HealerPID = o.Stage, o.Created, o.Restart, o.Placing, o.UpPID, o.HealerPID
	i.Endpoints = slices.Clone(o.Endpoints)
	i.Links = o.Links.clone()
	i.Runtime = nil
	if o.Runtime != nil {
		rec := *o.Runtime
		i.Runtime = &rec
	}
}

// update changes endpoint name's record (see mutate).
func (i *Instance) update(name string, f func(*RunningEndpoint)) error {
	return i.mutate(func(d *Instance) {
		for k := range d.Endpoints {
			if d.Endpoints[k].Name == name {
				f(&d.Endpoints[k])
			}
		}
	})
}

// lockFileName, in the state directory, serialises the record's writers.
const lockFileName = "instance.lock"

// lockFile takes an exclusive flock on path (created if missing) and
// returns its release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, err
	}
	return func() { unix.Flock(int(f.Fd()), unix.LOCK_UN); f.Close() }, nil
}
