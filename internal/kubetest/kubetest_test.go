package kubetest

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
)

func TestStagingModules(t *testing.T) {
	gomod := []byte("module k8s.io/kubernetes\n\ngo 1.24.0\n\nreplace (\n\tk8s.io/api => ./staging/src/k8s.io/api\n\tk8s.io/client-go => ./staging/src/k8s.io/client-go\n\tgithub.com/x/y => github.com/x/y v1.0.0\n)\n")
	got := strings.Join(stagingModules(gomod), " ")
	if got != "k8s.io/api k8s.io/client-go" {
		t.Errorf("stagingModules = %q", got)
	}
	if v := goDirective(gomod); v != "1.24.0" {
		t.Errorf("goDirective = %q", v)
	}
	if v := stagingVersion("v1.34.3"); v != "v0.34.3" {
		t.Errorf("stagingVersion = %q", v)
	}
}

func TestDocumentOfKind(t *testing.T) {
	stream := []byte("---\napiVersion: v1\nkind: ServiceAccount\n---\napiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: x\nspec:\n  names:\n    kind: Thing\n---\nkind: DaemonSet\n")
	doc, err := documentOfKind(stream, "CustomResourceDefinition")
	if err != nil || !strings.HasPrefix(string(doc), "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\n") || strings.Contains(string(doc), "DaemonSet") {
		t.Errorf("documentOfKind = %q, %v", doc, err)
	}
	// A nested "kind:" is not the document's kind.
	if _, err := documentOfKind([]byte("kind: List\nitems:\n  kind: CustomResourceDefinition\n"), "CustomResourceDefinition"); err == nil {
		t.Error("nested kind matched")
	}
}

func TestRecipeKeyChangesWithInputs(t *testing.T) {
	base := recipe{name: "kubernetes", version: "v1.34.3", outputs: []string{"kube-apiserver", "kubelet"}, flags: []string{"-trimpath"}}
	a := base.key()
	for _, change := range []func(r *recipe){
		func(r *recipe) { r.version = "v1.34.4" },
		func(r *recipe) { r.outputs = []string{"kube-apiserver"} },
		func(r *recipe) { r.name = "multus" },
		func(r *recipe) { r.flags = []string{"-trimpath", "CGO_ENABLED=0"} },
	} {
		r := base
		change(&r)
		if r.key() == a {
			t.Errorf("recipe key %s did not change with %+v", a, r)
		}
	}
	if v := kubernetesLDFlags("v1.34.3"); !strings.Contains(v, "gitVersion=v1.34.3") || !strings.Contains(v, "gitMajor=1 ") || !strings.Contains(v, "gitMinor=34 ") {
		t.Errorf("ldflags %q", v)
	}
}

// TestCachedBuildsOnce: a second caller, in parallel, waits for the first
// build and does not build again; a warm cache builds nothing.
func TestCachedBuildsOnce(t *testing.T) {
	cache := t.TempDir()
	var builds atomic.Int32
	build := func(ctx context.Context, work, out, version string, flags []string, log *slog.Logger) error {
		builds.Add(1)
		time.Sleep(300 * time.Millisecond)
		return os.WriteFile(filepath.Join(out, "prog"), []byte("x"), 0o755)
	}
	log := slog.New(slog.DiscardHandler)
	ctx := context.Background()
	errs := make(chan error, 2)
	dirs := make(chan string, 2)
	for range 2 {
		go func() {
			d, err := cached(ctx, cache, recipe{name: "thing", version: "v1", outputs: []string{"prog"}, build: build}, log)
			dirs <- d
			errs <- err
		}()
	}
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if d1, d2 := <-dirs, <-dirs; d1 != d2 {
		t.Errorf("two directories: %s, %s", d1, d2)
	}
	if _, err := cached(ctx, cache, recipe{name: "thing", version: "v1", outputs: []string{"prog"}, build: build}, log); err != nil {
		t.Fatal(err)
	}
	if n := builds.Load(); n != 1 {
		t.Errorf("built %d times, want 1", n)
	}
	leftovers, _ := filepath.Glob(filepath.Join(cache, "thing", ".build-*"))
	if len(leftovers) > 0 {
		t.Errorf("build directories left: %v", leftovers)
	}
}

// TestControlPlane starts the real control plane: the API server is the
// release built, takes a token (and refuses another), allows privileged
// pods, serves the NetworkAttachmentDefinition CRD; the controller-manager
// deletes a namespace with its contents. Stop by PID leaves nothing behind
// (asserted in Start's cleanup).
func TestControlPlane(t *testing.T) {
	cp := Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs := cp.Clientset(t)
	v, err := cs.Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != KubernetesVersion {
		t.Errorf("server version %s, want %s", v.GitVersion, KubernetesVersion)
	}

	ns := ektest.Name("ekt")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	yes, no := true, false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns,
			Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name":"l1","interface":"eth1"}]`}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers: []corev1.Container{{Name: "c", Image: "example.invalid/pause@sha256:" + strings.Repeat("0", 64),
				SecurityContext: &corev1.SecurityContext{Privileged: &yes}}},
		},
	}
	// The service-account controller or EnsureServiceAccount, whichever
	// is first, makes `default`; the API server admits the pod only then.
	if err := EnsureServiceAccount(ctx, cs, ns); err != nil {
		t.Fatal(err)
	}
	if err := EnsureServiceAccount(ctx, cs, ns); err != nil {
		t.Fatalf("second EnsureServiceAccount: %v", err)
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatalf("privileged pod refused: %v", err)
	}

	dc, err := dynamic.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	nad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": "l1", "namespace": ns},
		"spec":     map[string]any{"config": `{"cniVersion":"0.4.0","type":"bridge","bridge":"ekt1"}`},
	}}
	nads := dc.Resource(schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1", Resource: "network-attachment-definitions"}).Namespace(ns)
	if _, err := nads.Create(ctx, nad, metav1.CreateOptions{}); err != nil {
		t.Fatalf("NetworkAttachmentDefinition: %v", err)
	}
	got, err := nads.Get(ctx, "l1", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if cfg, _, _ := unstructured.NestedString(got.Object, "spec", "config"); !strings.Contains(cfg, `"bridge":"ekt1"`) {
		t.Errorf("NAD config = %q", cfg)
	}

	// Another token is refused.
	bad := cp.RESTConfig()
	bad.BearerToken = "not-the-token"
	badcs, err := kubernetes.NewForConfig(bad)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := badcs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("a wrong token: err = %v, want Unauthorized", err)
	}
	if raw, err := os.ReadFile(cp.Kubeconfig); err != nil || !bytes.Contains(raw, []byte(cp.Server)) {
		t.Errorf("kubeconfig %s does not name %s: %v", cp.Kubeconfig, cp.Server, err)
	}

	// The namespace controller empties a deleted namespace and removes it.
	if err := cs.CoreV1().Namespaces().Delete(ctx, ns, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		_, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("namespace %s still there after deletion: %v", ns, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestStopFromAnotherProcess: a control plane recorded in its directory
// is stopped from the record alone (what make kube-down does).
func TestStopFromAnotherProcess(t *testing.T) {
	cp := Start(t)
	loaded, err := Load(cp.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range loaded.Processes {
		if !p.Running() {
			t.Fatalf("%s (pid %d) not seen running from the record", p.Name, p.PID)
		}
	}
	if err := Stop(cp.Dir); err != nil {
		t.Fatal(err)
	}
	// Stop from the record sees a process end when it is a zombie; this
	// process, its parent, reaps it a moment later (Running trusts that).
	for _, p := range cp.Processes {
		if !p.wait(5 * time.Second) {
			t.Errorf("%s (pid %d) still running", p.Name, p.PID)
		}
	}
	if err := Stop(cp.Dir); err != nil {
		t.Errorf("Stop of a stopped control plane: %v", err)
	}
}

// TestNode: a node joins the control plane and goes Ready; a pod pulls
// its image from the node's registry, gets eth0 on the default network
// and a second interface from a NetworkAttachmentDefinition (Multus,
// bridge, static IPAM at the address its annotation asks for); stopping
// the cluster from its record alone (make kube-down) leaves no process,
// shim, mount, bridge or log link behind.
func TestNode(t *testing.T) {
	cp := StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cs := cp.Clientset(t)
	ns := ektest.Name("ekt")
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := EnsureServiceAccount(ctx, cs, ns); err != nil {
		t.Fatal(err)
	}
	dc, err := dynamic.NewForConfig(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	bridge := "ekt" + randomHex(4)
	nad := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
		"metadata": map[string]any{"name": "l1", "namespace": ns},
		"spec": map[string]any{"config": `{"cniVersion":"0.4.0","name":"` + ns + `-l1","type":"bridge","bridge":"` + bridge +
			`","capabilities":{"ips":true},"ipam":{"type":"static"}}`},
	}}
	nads := dc.Resource(schema.GroupVersionResource{Group: "k8s.cni.cncf.io", Version: "v1", Resource: "network-attachment-definitions"}).Namespace(ns)
	if _, err := nads.Create(ctx, nad, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	no := false
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "p", Namespace: ns,
			Annotations: map[string]string{"k8s.v1.cni.cncf.io/networks": `[{"name":"l1","interface":"eth1","ips":["10.250.0.2/24"]}]`}},
		Spec: corev1.PodSpec{
			AutomountServiceAccountToken: &no,
			Containers:                   []corev1.Container{{Name: "c", Image: cp.Node.PauseImage}},
		},
	}
	if _, err := cs.CoreV1().Pods(ns).Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for {
		p, err := cs.CoreV1().Pods(ns).Get(ctx, "p", metav1.GetOptions{})
		if err == nil && p.Status.Phase == corev1.PodRunning {
			status := p.Annotations["k8s.v1.cni.cncf.io/network-status"]
			if !strings.Contains(status, `"interface": "eth1"`) || !strings.Contains(status, "10.250.0.2") || p.Spec.NodeName != cp.Node.Name {
				t.Errorf("pod on node %q, network status %s", p.Spec.NodeName, status)
			}
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("pod not running: %+v %v", p.Status, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if _, err := os.Stat("/sys/class/net/" + bridge); err != nil {
		t.Errorf("bridge %s of the attachment: %v", bridge, err)
	}
	// Stopped as make kube-down does: from the record, by PID.
	if err := Stop(cp.Dir); err != nil {
		t.Fatal(err)
	}
	if left := cp.Node.Leftovers(); len(left) > 0 {
		t.Errorf("node left: %s", strings.Join(left, "; "))
	}
	// The attachment's bridge belongs to the workload, not the node; the
	// bridge CNI plugin leaves it (kuberun removes its own at teardown).
	exec.Command("ip", "link", "del", bridge).Run()
}
