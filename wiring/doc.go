// Package wiring cables a lesson's endpoints together: it turns the endpoint
// model's connections into a plan (pure data) and builds that plan on this
// machine out of network namespaces, veth pairs, Linux bridges and VXLAN
// devices, then removes it again without leaving anything behind.
//
// # Plan
//
// [NewPlan] reads an [endpoint.Model] and [Options] and returns a [Plan]:
// every endpoint with its namespace and interfaces, and every connection as a
// link a.ethI ↔ b.ethJ with MTU (the model's, else Options.MTU, else 1500;
// jumbo frames allowed) and addresses. Addresses come from the model; when a
// connection gives an explicit subnet and the model leaves an end without
// one, the plan assigns it the way antidote-core's host-local IPAM did: .1
// is reserved, then .2, .3, … in the lesson's endpoints order. A bridge
// segment whose model addresses repeat (the endpoint builder numbers each
// connection on its own) is numbered that way as a whole. Plans print with
// String and encode with encoding/json.
//
// Each link gets one of three kinds:
//   - veth: the default, a point-to-point pair between two namespaces;
//   - bridge: connections that share the same explicit subnet form one L2
//     segment — a Linux bridge joining every interface of those connections
//     (so a segment is chosen exactly when more than two interfaces share one
//     subnet);
//   - vxlan: the two endpoints are placed on different hosts
//     (Options.Placement), each host building its end with the same VNI.
//
// # Local runtime
//
// [Local] is the embedded runtime. Apply creates, for one lesson instance:
//   - a state dir, StateRoot/<instance> (default /run/endpointkit/<instance>),
//     holding wiring.json, which names every namespace and the host link
//     before any is created, so Teardown works from it alone;
//   - per endpoint a named network namespace ek-<instance>.<endpoint> (the
//     endpoint's "container", usable with `ip netns exec`);
//   - a fabric namespace ek-<instance> holding the management bridge "mgmt"
//     and the bridge segments;
//   - a management /24 from a pool (default 10.77.0.0/16; the first /24 that
//     no host address, route or other instance uses): the host is .1, on
//     ek<tag>, the host end of the veth "uplink" to the management bridge;
//     each endpoint's eth0 is a veth onto the bridge (port m<position>) with
//     address .(position+2) and a default route via .1, so the host reaches
//     every endpoint's management address directly;
//   - per link a veth pair named as planned in the two namespaces, a pair of
//     ports on a segment bridge, or a VXLAN device;
//   - optionally, published ports: DNAT rules in the nftables table
//     ip ek-<instance> that map a port on the host's own addresses to an
//     endpoint's management address.
//
// <tag> is 6 hex digits of a hash of the instance name, keeping the one
// host-side name within the 15-byte limit. Keeping the bridge out of the
// host namespace leaves one host link per instance, spares the management
// network the host's bridge firewalling (br_netfilter), and makes Teardown
// fast: removing a bridge port from a live bridge waits for an RCU grace
// period, once per port, while whole namespaces are freed in the background.
//
// Link addresses are put on the namespace interfaces only with
// Local.AssignLinkAddresses (plain-namespace endpoints). When a VM owns an
// interface — qemulaunch redirects ethN to a TAP inside the namespace with tc
// mirred — leave it off, and the guest configures the address.
//
// # Checksums
//
// Every interface this package creates has TX checksum offload turned off
// (the ethtool ioctl, as `ethtool -K IF tx off`; the kernel then drops TSO
// on it too). Otherwise a packet sent by a namespace's own stack (or the
// host's, over eth0) crosses the veth with only a partial checksum, and when
// tc mirred moves it into a TAP that QEMU opened with checksum offload, it
// reaches the guest marked "checksum needed" — fine for virtio-net, wrong
// for NIC models and guests that expect finished frames. With offload off
// every frame leaves the veth complete, whatever reads it next.
//
// # Speed
//
// All veth pairs of an Apply are created by one batch of rtnetlink requests
// sent from the host namespace, each pair placed straight into its two
// namespaces with interface indexes chosen in advance, so links are brought
// up and given addresses and routes with one batch per namespace and no
// lookups; namespaces are created and configured in parallel.
//
// # Namespaces and threads
//
// Nothing here switches the namespace of a goroutine that outlives a call:
// sockets are opened inside a namespace on a locked thread (nsutil.Do) and
// then used from anywhere. To run a program inside an endpoint's namespace
// use [State.Start] (nsutil.Do around exec.Cmd.Start).
//
// Apply needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN).
package wiring
