// Package endpointkit turns network-automation lessons (the NRE Labs /
// Antidote format) into running, cabled, configured virtual machines.
//
// A lesson is a directory with a lesson.meta.yaml, per-stage guides and
// per-stage configuration files. Each endpoint of a lesson is a VM under QEMU,
// packaged as a container image. endpointkit covers the three stages of making
// and running such images:
//
//  1. Image build (package imagebuild): a base VM image from nothing
//     (an initramfs or debootstrap), from a vendor disk or an installer, with
//     the antidote user, DHCP on the primary interface, SSH/NETCONF/REST
//     enabled; then the container recipe whose entrypoint launches the VM.
//     The result is an image directory described by a vmimage.Manifest.
//  2. Metafile and wiring (packages lessonmeta, endpoint, wiring): read and
//     validate the metafile, derive each endpoint's image, ports and
//     interfaces, and cable the endpoints together as the lesson says.
//  3. Configuration (package configure): hostname, interface addresses,
//     files from the lesson directory, service restarts — over SSH/SFTP,
//     NETCONF, Ansible or a Python script.
//
// Package qemulaunch is the in-container launcher: it finds the container's
// interfaces, stitches TAPs to them, forwards the declared ports into the VM,
// shares the lesson directory over 9p, and runs QEMU under QMP with layered
// readiness and a graceful shutdown.
//
// # Running a lesson
//
// This package is the one place that knows all of them. Up runs a whole
// lesson on this machine, the way `lesson up` does and a third-party
// platform can without shelling out:
//
//	inst, err := endpointkit.Up(ctx, "examples/lessons/linux-triangle", endpointkit.Options{Stage: 0})
//	…
//	err = inst.Configure(ctx, 1) // a stage change on the live lesson
//	err = inst.Down(ctx)         // VMs, namespaces, links, state: gone
//
// Up validates the lesson (lessonmeta), resolves every image through a
// Catalog — built image directories, else recipes built on demand
// (imagebuild) — and fails before anything starts when an image is unknown
// or cannot be built. It plans the endpoints (endpoint) and their wiring
// (wiring), resolves the accelerator once (auto probes KVM, else TCG), and
// hands the plan to a [Runtime], which places it. Endpoints boot in
// parallel; each is configured (configure) as soon as the runtime says it
// is ready, so the lesson is ready about when its slowest endpoint is.
//
// # Runtimes
//
// Up, Open, Down, Status, DialSSH, Console and Configure reach endpoints
// only through the [Runtime] interface: place the endpoints and links,
// wait until an endpoint is ready, reach a guest port from this process,
// attach a console, read the logs, observe what runs, remove everything.
// The local runtime (the default) creates a network namespace per endpoint
// with the links between them (wiring.Local) and starts each endpoint's
// launcher — the cmd/endpoint binary, `endpoint run`, exactly the
// entrypoint of an endpoint container, told what to run by a
// qemulaunch.Launch — inside its namespace, in its own session, with its
// output in the state directory. This machine reaches every endpoint at
// its management address, where the launcher forwards the ports
// qemulaunch.ExposedPorts decides.
//
// # Self-healing
//
// An endpoint whose VM ends unasked is started again and the current stage
// configured on it (Options.Restart: on-failure by default, always, never),
// in three layers, each doing what only it can:
//
//   - the launcher (qemulaunch.Supervise) restarts QEMU in place, with a
//     backoff and a limit: the endpoint's namespace and interfaces stay, so
//     its peers' links are never touched; only its TAPs are stitched again;
//   - the runtime restarts what the launcher cannot (Runtime.Restart: its
//     launcher or its namespace is gone — locally the wiring is applied
//     again, which converges, and a new launcher started; a cluster deletes
//     the pod) and repairs deleted links (Runtime.Repair);
//   - the orchestration notices a new boot (Observation.Boot) and applies
//     the stage. That takes the lesson, and must happen with no lesson
//     command running: Up starts the instance's healer, a process of its
//     own (`endpoint heal`, running [Heal]), which Teardown stops first.
//
// Instance.RestartEndpoint restarts one on demand (`lesson restart EP
// [--reset]`). Configure, DialSSH and Console on an endpoint that is down
// or restarting fail at once with ErrNotRunning naming its state; an
// instance whose Up was killed mid-way is Abandoned and says how to remove
// it. Instance records are written under a lock and read again before each
// change: the healer and a command may write at once.
//
// # Identity and host keys
//
// MACs derive from instance, endpoint and interface, so two instances of
// one lesson never collide on one L2 segment. SSH host keys are never
// taken on trust: an image lists its guest's (made at build time), or it
// takes a per-instance identity the launcher hands the guest over fw_cfg
// (qemulaunch.InstanceHostKeys), or its guest prints them on its serial
// console at boot and the launcher pins them (qemulaunch.PinnedHostKeys);
// known_hosts, configuration, `lesson ssh` and the python method's
// ANTIDOTE_TARGET_KNOWN_HOSTS use exactly those, and refuse any other. A
// runtime whose launchers run elsewhere (a cluster) says which keys those
// are through HostKeyer.
//
// # Three layers of an endpoint
//
// An endpoint is written in the lesson (lessonmeta.Endpoint: the metafile
// as written, with positions for errors), derived into the model
// (endpoint.Endpoint: image, credentials, ports, interfaces, MACs,
// addresses, per-stage configuration — pure data), and, once placed,
// recorded as it runs ([RunningEndpoint] in an [Instance]: namespace,
// address, launcher, [RunState]). docs/architecture.md draws the packages
// and the route from `lesson up` to QEMU's command line.
//
// Contexts: ctx bounds Up (cancelling it — Ctrl-C — removes everything
// started), Configure and Down; the instance itself runs until Down.
// Failures: an endpoint that does not become ready fails Up with a
// *BootError quoting its console, after everything is removed; a stage that
// fails on some endpoints leaves the lesson up and returns the Instance with
// a *ConfigureError (Instance.Status says which).
//
// # State directory
//
// Each instance has a state directory, Options.StateRoot/NAME (default
// /run/endpointkit/NAME, NAME defaulting to the lesson's slug):
//
//	instance.json   the Instance (endpoints, addresses, ports, pids, states), version 1
//	wiring.json     package wiring's record of namespaces and links
//	instance.lock   serialises writers of instance.json (flock)
//	known_hosts     every endpoint's pinned SSH host keys, for ssh -o UserKnownHostsFile=
//	EP/             endpoint EP's launcher state (qemulaunch.StateDir: health,
//	                restarts, hostkeys, console.sock, console.log, qemu.pid,
//	                qmp.sock, overlay); EP shortened with a hash when its
//	                socket paths would be too long for the kernel
//	EP.log          endpoint EP's launcher output
//	heal.log        the healer's output
//
// Instance.WriteLog prints an endpoint's console or launcher log (and
// follows it); Instance.Console connects to its serial console, where every
// example image offers a login.
//
// Open reattaches to an instance from it (another process, after a
// restart); Teardown removes an instance from it alone, also after a crash,
// with the record damaged or the whole directory deleted: the local
// runtime finds the instance's processes by the directory in their command
// lines (qemulaunch.Processes) and its namespaces by name
// (wiring.Local.Remove).
//
// # Environment
//
// Up, Configure and Down need root (namespaces, TAPs), QEMU and the
// `endpoint` launcher (Options.Launcher; default beside the running program,
// else on PATH). ENDPOINTKIT_ACCEL (auto, kvm, tcg) overrides
// Options.Accel. Progress goes to Options.Progress and details to
// Options.Logger; the package prints nothing.
//
// The binaries in cmd/ (lesson, endpoint, imagebuild) only parse flags and
// call these packages; examples/ holds runnable programs, example lessons and
// image recipes.
package endpointkit
