// Package kubeplan turns a lesson instance — its endpoint model and wiring
// plan — into Kubernetes objects, as data first ([Render], printable with
// [Objects.WriteYAML] for `kubectl apply -f` or GitOps), and then applies
// and deletes them with client-go server-side apply ([Applier]).
//
// # Objects of one instance
//
//   - a Namespace ek-<instance>, labelled with the lesson, the instance and
//     the stage (LabelLesson, LabelInstance, LabelStage);
//   - a ServiceAccount "endpointkit" whose token is never mounted (pods name
//     it, so they do not wait for a controller to create "default");
//   - per connection a NetworkAttachmentDefinition (Multus): bridge CNI on a
//     Linux bridge named ek<tag><l|s><n> (at most 15 bytes; tag is 8 hex
//     digits of a hash of the namespace, so bridges of different instances
//     on one node never meet), static IPAM only when the lesson gives the
//     connection a subnet (the planned address is requested through the
//     "ips" capability, so each end gets the address the wiring plan gives
//     it, and no lease is kept on the node). Connections that share a
//     subnet (a wiring segment) share one bridge;
//   - per endpoint a Pod: the endpoint image by digest, running the
//     launcher (`endpoint run`, see [Launcher]) with the data interfaces
//     attached through the k8s.v1.cni.cncf.io/networks annotation under
//     the endpoint model's names (eth1, eth2, …); privileged, or with
//     NET_ADMIN and /dev/net/tun only ([SecurityMinimal]); /dev/kvm through
//     a device plugin's resource where the nodes have one
//     (Options.KVMResource); ready when the launcher says the guest answers
//     on its management port; the lesson directory from a ConfigMap
//     (Options.LessonFiles) or, for a larger one, copied by an init
//     container from a lesson-content image (no hostPath); co-located on
//     one node by pod affinity, or pinned with Options.Node;
//   - per presentation a ClusterIP Service (endpoint-presentation);
//   - a ConfigMap `lesson` with the lesson directory's files, when it is
//     delivered that way;
//   - a NetworkPolicy letting the instance's pods talk only to each other,
//     plus DNS.
//
// # Apply and delete
//
// [Applier.Apply] sends every object with server-side apply under one field
// manager (re-applying unchanged objects changes nothing), many instances
// at once, in three waves — namespaces; then service accounts, networks,
// services and policies; then pods — each wave's requests in parallel.
// [Applier.Delete] deletes the namespaces and can wait until they are gone.
package kubeplan
