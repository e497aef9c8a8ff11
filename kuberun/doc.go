// Package kuberun runs lesson instances on a Kubernetes cluster: it is the
// endpointkit.Runtime that places an instance as a namespace of pods and
// reaches its endpoints through the cluster's API server, so `lesson up
// --kubeconfig FILE` and a platform embedding endpointkit
// (Options.Runtime) launch the same lessons there as on one machine.
//
//	rt, err := kuberun.New(kuberun.Options{Kubeconfig: "admin.conf", Registry: "registry.example/labs"})
//	inst, err := endpointkit.Up(ctx, "lessons/linux-triangle", endpointkit.Options{Runtime: rt})
//
// # Placing
//
// Up asks the runtime first (Check) whether the cluster answers, whether
// its RBAC lets the user do everything an instance needs (one
// SelfSubjectAccessReview per verb and resource; a refusal lists them all)
// and whether the instance's namespace is free — before any image is built
// or pushed. Place then
//
//  1. resolves every endpoint image to a reference by digest in a
//     registry: Options.Images, else REGISTRY/PATH/SLUG with the digest of
//     the image's OCI layout (imagebuild.Builder.BuildOCI builds one when
//     missing), pushed with imagebuild.Push when the registry lacks it;
//     the lesson directory goes in a ConfigMap (LessonFiles) mounted in
//     every pod; one larger than kubeplan.MaxLessonFiles goes, with a
//     registry, as a lesson-content image (LessonImage) that the pods'
//     init container copies;
//  2. renders the objects with package kubeplan from the placement: the
//     pods run exactly the launch the placement gives each endpoint (the
//     launcher contract, qemulaunch.Launch), rewritten for the container
//     and listening on the pod's loopback too, where port forwards land;
//  3. applies them (server-side apply, one field manager).
//
// # Host keys
//
// SSH host keys are pinned as locally (HostKeys, the endpointkit.HostKeyer
// seam), though the launchers' state directories are in the pods. An
// image listing its keys is pinned by them. For an image that takes a
// per-instance identity (vmimage.IdentityFWCfg), Place makes the identity
// on this machine, in the instance directory (ENDPOINT/identity.json,
// 0600; RunningEndpoint.IdentityFile), before anything is applied, and
// hands it to the pod as a Secret ENDPOINT-identity mounted read-only at
// kubeplan.IdentityDir; the launcher is told the file (`endpoint run
// --identity`) and gives it to the guest over fw_cfg, so later commands
// in any process pin the keys made here. Keys a guest prints on its
// console (a vendor disk listing none) are read from the launcher's state
// directory in the pod by `endpoint hostkeys` through the API server's
// exec, an authenticated channel. Render prints no identity Secret: they
// hold private keys and are made only for a placed instance.
//
// The instance record names the kubeconfig and context (RuntimeRecord);
// ForRecord rebuilds the runtime from it, so later commands need no flags.
//
// # Reaching
//
// Nothing assumes a pod's address is routable from where endpointkit
// runs: Reach is a client-go port forward to 127.0.0.1 through the API
// server; Console runs `endpoint console` in the container (exec); Logs
// and WriteLog read the console log with `endpoint logs` (exec) and the
// launcher's output as the container's log, with the pod's events. Ready
// reads the guest's SSH banner through a forward from the moment the
// endpoint container runs, not waiting for the pod's Ready condition (the
// readiness probe, the launcher's `endpoint health`, runs every 2 s and
// keeps Services and status right); it fails at once on a pod that ends,
// a launcher that exits, an image that cannot be pulled or a sandbox the
// CNI plugins cannot make, and when a Ready pod's SSH does not answer
// through the forward.
//
// # Removing
//
// Remove deletes the instance's pods (their launchers power the guests
// off), waits until the kubelet has torn their networks down, removes the
// link bridges from each node that ran them — the bridge CNI plugin never
// deletes a bridge, so a short host-network pod per node runs `endpoint
// remove-bridges` from the endpoint image already there — and deletes the
// namespace, waiting until it is gone. Links use static IPAM, so nodes
// keep no leases.
//
// Restarting one endpoint and repairing links are the local runtime's
// (ErrUnsupported here); a launcher restarts its VM in place as the
// instance's restart policy says, and the kubelet restarts a launcher that
// exits. The runtime does not implement endpointkit.LinkChanger: links of
// an instance on a cluster are fixed while it runs (Instance.AddLink and
// RemoveLink return endpointkit.ErrLiveLinks); change the lesson and
// replace the instance.
package kuberun
