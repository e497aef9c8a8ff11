// Package qemulaunch runs one endpoint VM inside a container's network
// namespace: it turns the container's interfaces into VM NICs, forwards the
// declared management ports into the guest, shares the lesson directory
// over 9p, and keeps QEMU alive and observable over QMP.
//
// # Shape
//
// A plain-data [Config] describes the instance. [Config.Plan] computes the
// QEMU command line and everything that will be created, without touching
// the system (golden-tested). [Start] resolves what only the running system
// knows, then acts:
//
//  1. accelerator: [ResolveAccel] (auto proves KVM runs a probe guest,
//     else falls back to TCG loudly and scales boot deadlines);
//  2. interfaces: waits, bounded and event-driven (netlink notifications),
//     for eth0's IPv4 address and eth1…ethN;
//  3. ports: each forwarded host port is checked bindable on eth0's
//     address; QEMU user networking (hostfwd) then forwards exactly those,
//     nothing else is exposed;
//  4. disk: a qcow2 overlay in the state dir over the image's base disk
//     (the base is never written);
//  5. data NICs: per ethN a persistent single-queue tapN (MTU = ethN's),
//     stitched by tc mirred (u32 match-all, both ways) or a Linux bridge
//     (group_fwd_mask passes LLDP), TX checksum offload off on ethN; NIC
//     for ethN pinned at PCI slot 2+N, management NIC at slot 2;
//  6. QEMU: started in the namespace, serial console on its stdio, QMP on
//     a unix socket in the state dir; under KVM with the host's CPU, under
//     TCG with the image's CPU hint (imagebuild asks for qemu64,+rdrand: a
//     guest with RDRAND has its random number generator ready at boot
//     instead of waiting about a second for entropy before its SSH server
//     can answer).
//
// [VM.Ready] then waits layer by layer (QMP running, serial regex, real
// SSH handshakes); [VM.Stop] powers the guest off gracefully with
// escalation; [VM.Wait] reports how QEMU ended ([Exit]).
//
// # NICs of a running VM
//
// [VM.AddNIC] adds a data NIC behind a container interface that appears
// later (a link added to a running lesson): TAP and stitch as at boot,
// then QMP netdev_add and device_add where data NIC N goes;
// [VM.RemoveNIC] has the guest release one (device_del, the
// DEVICE_DELETED event), then removes its back end, stitch and TAP.
// [Config.HotplugNIC] says beforehand where a NIC would go and refuses
// what cannot be hot-plugged ([ErrNoHotplug]: machine q35, ACPI off). A
// supervising launcher ([Supervise]) serves them on the state directory's
// control socket, since it holds QEMU's one QMP connection: [AddNIC] and
// [RemoveNIC] are the client, `endpoint nic add|del` the command line.
//
// # Launcher contract
//
// [Launch] is what an endpoint's launcher (`endpoint run`, the entrypoint
// of an endpoint container) is told, as plain data: [LaunchFor] derives it
// from the lesson model, [Launch.Args] and [Launch.Env] render it as a
// command line or an ENDPOINT_* environment, [ParseLaunch] reads either
// back (fuzzed: parse(render(l)) == l), [Launch.Config] loads the image
// into a [Config], and [Supervise] runs it to the end — signals, readiness,
// exit statuses ([ExitCode]). [ExposedPorts] is the one port policy.
// [Processes] and [StopProcesses] find and stop the launchers (and QEMU)
// of a state directory on this machine.
//
// # Restarts and host keys
//
// [Supervise] restarts a VM that ended unasked in place, as its
// [RestartPolicy] says, with a backoff (none before the first restart in a
// row) and [DefaultMaxRestarts] in a row; the namespace and its interfaces
// stay, the TAPs are stitched again, the guest keeps its overlay (a
// [RestartRequest] with Reset gives it a fresh one). [ReadRestarts] reads
// the record other programs show. An image that lists no SSH host keys
// has its guest's learned from the serial console at every boot (between
// [HostKeysBegin] and [HostKeysEnd]) and pinned ([PinnedHostKeys]); a
// guest that prints none never becomes ready, and [HostKeyCallback]
// refuses every key when there is none to pin.
//
// # Contexts
//
//   - Start(ctx): bounds start-up only; cancelling later does nothing to
//     the VM.
//   - Ready(ctx), Wait(ctx), Status(ctx): bound the wait only.
//   - Stop(ctx): bounds the graceful part; when ctx ends first Stop
//     escalates at once (quit, SIGKILL) and still returns only after QEMU
//     exited and cleanup ran.
//
// Every QMP command runs under its own deadline (Timeouts.QMPCommand): the
// go-qemu client has none, so a wedged monitor is disconnected rather than
// waited on. QMP events are drained continuously.
//
// # Shutdown semantics
//
// QEMU runs without -no-shutdown: when the guest powers off, QEMU flushes
// the disks and exits by itself, after emitting SHUTDOWN (reason
// guest-shutdown), which [Exit] records. With -no-shutdown a guest
// poweroff would leave QEMU idling until the launcher quit it — one more
// round trip for nothing, and a guest stuck forever if the launcher were
// gone. A guest reboot stays a reboot (no -no-reboot).
//
// # Namespaces
//
// All netlink work goes through a handle bound to the VM's namespace
// (Config.NetNS, or the caller's). What must run inside — creating TAPs,
// binding probe sockets, dialling SSH, exec'ing QEMU — runs on a locked
// thread that is switched in and back (or discarded); no long-lived
// goroutine ever changes namespace.
//
// # Resources and cleanup
//
// Links this package creates carry the alias "endpointkit:NAME"; a launch
// removes such leftovers of a crashed earlier launch of the same instance.
// When QEMU exits — however it exits — the launcher removes the stitches
// (ingress qdiscs, bridges), TAPs, sockets, pid files and (unless
// Config.KeepOverlay) the overlay. QEMU gets SIGKILL if the launcher dies
// (PR_SET_PDEATHSIG). See [StateDir] for the state directory layout.
//
// # Environment
//
//	ENDPOINTKIT_ACCEL   overrides Config.Accel (auto, kvm, tcg)
//
// Creating TAPs, qdiscs and bridges needs root or CAP_NET_ADMIN in the
// namespace and /dev/net/tun; QEMU and qemu-img must be installed.
package qemulaunch
