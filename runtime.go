package endpointkit

import (
	"context"
	"io"
	"net/netip"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
)

// Runtime is where an instance's endpoints and links run. Up places the
// instance through it; Status, Configure, DialSSH, Console and Down reach
// the endpoints only through it, so nothing else assumes a management
// address, a process or a file on this machine.
//
// The local runtime (the default, Options.Runtime nil) places each
// endpoint in a network namespace of this machine, cables them with
// wiring.Local and runs each endpoint's launcher (`endpoint run`) as a
// process there; endpoints are reached at their management addresses. A
// cluster runtime places the same [Placement] as pods, attachments and
// services, and reaches guest ports through forwards to this machine.
//
// Methods taking a [RunningEndpoint] get the record Place filled in (also
// after Open, in another process); they may be called concurrently.
type Runtime interface {
	// Place creates the instance's endpoints and links and starts every
	// endpoint's launcher as p says, recording where each is
	// (p.Record). It returns once all are started, not ready. What it can
	// tell it cannot do it refuses before creating anything; on a later
	// error, what it created is removed by Remove.
	Place(ctx context.Context, p *Placement) error
	// Ready waits until the endpoint's guest is ready: nil; ctx's error
	// when ctx ends first; otherwise an error saying why it will not
	// become ready (its launcher failed or ended).
	Ready(ctx context.Context, ep RunningEndpoint) error
	// Reach returns an address from which this process reaches the
	// endpoint's guest port (local: the management address and the
	// forwarded port; a cluster: a port forward on 127.0.0.1). It stays
	// usable at least until ctx ends.
	Reach(ctx context.Context, ep RunningEndpoint, guestPort int) (netip.AddrPort, error)
	// Console attaches to the endpoint's serial console: what the guest
	// prints is read, what is written goes to the guest.
	Console(ctx context.Context, ep RunningEndpoint) (io.ReadWriteCloser, error)
	// Logs returns the tails of the endpoint's serial console and of its
	// launcher's output.
	Logs(ctx context.Context, ep RunningEndpoint) Logs
	// Observe reports what runs of the endpoint now.
	Observe(ctx context.Context, ep RunningEndpoint) Observation
	// Restart starts the endpoint's VM again, with a fresh overlay (its
	// disk as the image has it) when reset. When its launcher runs in its
	// namespace, the launcher restarts the VM in place (locally: SIGUSR1,
	// SIGUSR2 to reset), which leaves the endpoint's interfaces and so its
	// peers' links alone. When the launcher or the namespace is gone, the
	// endpoint is placed anew from p: whatever of it is left is stopped,
	// its namespace and links are repaired and its launcher started,
	// recorded through p.Record (a cluster runtime deletes the pod and
	// lets its controller make a new one).
	Restart(ctx context.Context, p *Placement, ep RunningEndpoint, reset bool) error
	// Repair recreates what is missing of the instance's namespaces and
	// links (locally, wiring.Local.Apply converges); launchers stitch
	// their VMs to recreated interfaces by themselves.
	Repair(ctx context.Context, p *Placement) error
	// Remove removes everything of the instance whose state directory is
	// dir — from the directory's name alone when its records are gone (a
	// crash). Launchers get grace to power their guests off (0: killed at
	// once). It is idempotent and leaves dir itself to the caller.
	Remove(ctx context.Context, dir string, grace time.Duration) error
}

// Placement is one lesson instance, planned, as a [Runtime] places it.
type Placement struct {
	Instance string // the instance's name
	Dir      string // its state directory
	Accel    qemulaunch.Accel
	// Wiring is the plan of the namespaces (or pods) and links.
	Wiring *wiring.Plan
	// Endpoints are the lesson's endpoints in model order, each with what
	// its launcher is told.
	Endpoints []EndpointLaunch
	// Record changes an endpoint's running record and saves the instance;
	// Place records there where it put the endpoint (namespace, address,
	// launcher) as soon as it knows.
	Record func(endpoint string, change func(*RunningEndpoint)) error
	// Report sends a progress event (StepWire, StepBoot).
	Report func(step Step, endpoint, message string)

	// Model is the endpoint model the launches come from (the lesson's
	// slug, every endpoint); Stage the stage Up configures (-1: none);
	// LessonDir the lesson directory on this machine.
	Model     *endpoint.Model
	Stage     int
	LessonDir string
	// Replace: an existing placement of the instance that this machine
	// has no record of (a cluster namespace left by another machine) is
	// removed first; otherwise Place refuses it.
	Replace bool
}

// EndpointLaunch is one endpoint of a Placement.
type EndpointLaunch struct {
	Endpoint endpoint.Endpoint
	Image    *vmimage.Image
	// Launch is the launcher contract for it: image, lesson and state
	// directories, name, ports, MACs, accelerator, grace. A runtime that
	// runs the launcher elsewhere (a container) rewrites the directories.
	Launch qemulaunch.Launch
}

// Logs are the tails of an endpoint's output.
type Logs struct {
	Console  string // the serial console
	Launcher string // the launcher's output
	// Where says where the whole launcher output is (a file, a command).
	Where string
}

// Observation is what a Runtime sees of an endpoint now.
type Observation struct {
	// Running: its launcher runs (local: the process; a cluster: the
	// container).
	Running bool
	// Health is the launcher's health word (qemulaunch.Health*), "" when
	// there is none to read; Detail its reason.
	Health, Detail string
	// Restarts counts the restarts the launcher made (qemulaunch
	// Restarts.Count, kept across launchers of one state directory);
	// LastExit says how the VM ended before the last one.
	Restarts int
	LastExit string
	// Boot names the guest's current boot (locally: launcher pid and
	// restarts); it changes whenever the VM starts again.
	Boot string
	// Wiring says what is missing of the endpoint's namespace and
	// interfaces ("" when all is there); NamespaceGone when the namespace
	// itself is.
	Wiring        string
	NamespaceGone bool
}

// LinkChanger is implemented by a Runtime that can change the links of a
// running instance (live topology: Instance.AddLink and RemoveLink, `lesson
// link add|del`). Instance refuses those on a runtime without it, with an
// error wrapping ErrLiveLinks. The local runtime implements it: wiring
// makes or removes the link, and each end's launcher hot-plugs or unplugs
// a NIC behind its interface (qemulaunch.AddNIC and RemoveNIC, through the
// launcher's control socket).
type LinkChanger interface {
	// AddLink cables link k of p.Wiring (the instance's plan with the new
	// link) and has the launchers of its ends add a NIC behind its
	// interfaces: ends[0] at end A, ends[1] at end B. It returns once QEMU
	// has both NICs (the guests still have to bring them up); on error
	// nothing of the link is left.
	AddLink(ctx context.Context, p *Placement, k int, ends [2]LinkNIC) ([2]qemulaunch.NIC, error)
	// RemoveLink has the launchers of the link's ends remove their NICs,
	// then removes link (as it was planned; p.Wiring is the plan without
	// it). A NIC already gone counts as removed; while one is not, the
	// link stays and the error says which end holds on to it, so a
	// removal can be repeated.
	RemoveLink(ctx context.Context, p *Placement, link wiring.LinkPlan, ends [2]LinkNIC) error
}

// LinkNIC is one end of a link a LinkChanger adds or removes: the endpoint
// and the NIC behind its interface (name, MAC, MTU).
type LinkNIC struct {
	Endpoint RunningEndpoint
	NIC      qemulaunch.Interface
}
