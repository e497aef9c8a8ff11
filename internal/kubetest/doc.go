// Package kubetest assembles a real, single-node Kubernetes control plane for
// endpointkit's tests and for people (make kube-up / make kube-down): Debian's
// etcd and a kube-apiserver built from the Go module proxy, with a
// self-signed serving certificate, a token for the test client,
// service-account keys, privileged pods allowed and the Multus
// NetworkAttachmentDefinition CRD installed.
//
// # Binaries
//
// [BuildKubernetes] builds kube-apiserver, kube-controller-manager and
// kubelet ([KubernetesVersion])
// in a throw-away module outside the repository that requires
// k8s.io/kubernetes and replaces each of its staging modules
// (k8s.io/api, k8s.io/client-go, …; the list is read from k8s.io/kubernetes'
// own go.mod) with the matching v0 release; [BuildMultus] builds the Multus
// thin plugin ([MultusVersion]) the same way and extracts the
// NetworkAttachmentDefinition CRD from the module's deployment manifest.
// Both are cached by version and recipe under the test cache
// (internal/ektest.CacheDir), so only the first run on a machine builds; a
// lock file lets test packages running in parallel share one build. Builds
// run under `nice`, stripped and with -trimpath.
//
// # Processes
//
// [StartControlPlane] starts etcd, kube-apiserver and (given its binary)
// kube-controller-manager in their own sessions,
// with their logs and every generated file in one directory, and records
// their PIDs there (cluster.json). [Stop] (or [ControlPlane.Stop]) ends them
// by those PIDs — checking each still runs the program it started, so a
// reused PID is never signalled — and removes the directory; a separate
// process can stop a cluster another one started (make kube-down). Nothing
// is found or killed by name.
//
// The controller-manager runs only the namespace controller (a deleted
// namespace is emptied and goes away, as on any cluster) and the
// service-account controller; tests that create a pod right after its
// namespace call [EnsureServiceAccount] rather than wait for it. There is no
// scheduler: pods name their node.
package kubetest
