package kuberun_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// writeKubeconfig writes a kubeconfig for server with token, context
// "test".
func writeKubeconfig(t *testing.T, server, token, ca string) string {
	t.Helper()
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["c"] = &clientcmdapi.Cluster{Server: server, CertificateAuthority: ca, InsecureSkipTLSVerify: ca == ""}
	cfg.AuthInfos["u"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["test"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "u"}
	cfg.CurrentContext = "test"
	path := filepath.Join(t.TempDir(), "kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, path); err != nil {
		t.Fatal(err)
	}
	return path
}

// A missing kubeconfig, an unknown context: named, before any contact.
func TestNewRefusesBadKubeconfig(t *testing.T) {
	_, err := kuberun.New(kuberun.Options{Kubeconfig: "/nonexistent/kubeconfig"})
	if !errors.Is(err, kuberun.ErrKubeconfig) || !strings.Contains(err.Error(), "/nonexistent/kubeconfig") {
		t.Errorf("missing kubeconfig: %v", err)
	}
	path := writeKubeconfig(t, "https://127.0.0.1:1", "x", "")
	_, err = kuberun.New(kuberun.Options{Kubeconfig: path, Context: "prod"})
	if !errors.Is(err, kuberun.ErrKubeconfig) || !strings.Contains(err.Error(), `no context "prod"`) || !strings.Contains(err.Error(), "test") {
		t.Errorf("unknown context: %v", err)
	}
	rt, err := kuberun.New(kuberun.Options{Kubeconfig: path})
	if err != nil {
		t.Fatal(err)
	}
	if rec := rt.RuntimeRecord(); rec.Kind != kuberun.Kind || rec.Kubeconfig != path || rec.Context != "test" {
		t.Errorf("record %+v", rec)
	}
}

// An unreachable cluster fails Up after validation, before any image is
// built or anything created: no state directory.
func TestUpUnreachableCluster(t *testing.T) {
	rt, err := kuberun.New(kuberun.Options{Kubeconfig: writeKubeconfig(t, "https://127.0.0.1:1", "x", "")})
	if err != nil {
		t.Fatal(err)
	}
	opts := upOptions(t, rt, map[string]string{"tiny": filepath.Join(t.TempDir(), "not-built")})
	t0 := time.Now()
	_, err = endpointkit.Up(context.Background(), lessonPath(t, "linux-triangle"), opts)
	if !errors.Is(err, kuberun.ErrUnreachable) || !strings.Contains(err.Error(), "https://127.0.0.1:1") {
		t.Errorf("Up on an unreachable cluster: %v", err)
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("took %v to say so", d)
	}
	if _, err := os.Stat(endpointkit.InstanceDir(opts.StateRoot, opts.Instance)); err == nil {
		t.Error("a state directory was created")
	}
}

// Features of the local runtime this one lacks are refused by name.
func TestUnsupported(t *testing.T) {
	rt, err := kuberun.New(kuberun.Options{Kubeconfig: writeKubeconfig(t, "https://127.0.0.1:1", "x", "")})
	if err != nil {
		t.Fatal(err)
	}
	err = rt.Restart(context.Background(), &endpointkit.Placement{Instance: "x"}, endpointkit.RunningEndpoint{Name: "r1"}, false)
	if !errors.Is(err, kuberun.ErrUnsupported) || !errors.Is(err, errors.ErrUnsupported) || !strings.Contains(err.Error(), "r1") {
		t.Errorf("Restart: %v", err)
	}
	if err := rt.Repair(context.Background(), &endpointkit.Placement{Instance: "x"}); !errors.Is(err, kuberun.ErrUnsupported) {
		t.Errorf("Repair: %v", err)
	}
	// Live links are the local runtime's: Instance.AddLink says so
	// (ErrLiveLinks) because this runtime is no LinkChanger.
	if _, ok := any(rt).(endpointkit.LinkChanger); ok {
		t.Error("the Kubernetes runtime claims to change links live")
	}
}

// TestKubernetesFaults runs the bad cases on one real cluster: a user RBAC
// refuses, an image in no registry, a namespace that exists, a pod that
// never becomes ready (removed, or kept with KeepOnFailure).
func TestKubernetesFaults(t *testing.T) {
	requireCluster(t)
	images := tinyOCI(t)
	cp := kubetest.StartCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	lesson := lessonPath(t, "linux-triangle")

	t.Run("rbac", func(t *testing.T) {
		o := runtimeOptions(t, cp)
		o.Kubeconfig = writeKubeconfig(t, cp.Server, cp.NobodyToken, cp.CAFile)
		rt, err := kuberun.New(o)
		if err != nil {
			t.Fatal(err)
		}
		opts := upOptions(t, rt, images)
		_, err = endpointkit.Up(ctx, lesson, opts)
		if !errors.Is(err, kuberun.ErrForbidden) || !strings.Contains(err.Error(), "create namespaces") ||
			!strings.Contains(err.Error(), "create pods/portforward in namespace "+kubeplan.Namespace(opts.Instance)) ||
			strings.Contains(err.Error(), "secrets") { // no image of this lesson takes an identity
			t.Errorf("Up as a user without rights: %v", err)
		}
		if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
			t.Errorf("left: %v", left)
		}
	})

	t.Run("image-not-in-registry", func(t *testing.T) {
		o := runtimeOptions(t, cp)
		o.Registry = ""
		rt, err := kuberun.New(o)
		if err != nil {
			t.Fatal(err)
		}
		opts := upOptions(t, rt, images)
		_, err = endpointkit.Up(ctx, lesson, opts)
		if !errors.Is(err, kuberun.ErrImageNotInRegistry) || !strings.Contains(err.Error(), `image "tiny"`) {
			t.Errorf("Up without a registry: %v", err)
		}
		if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
			t.Errorf("left: %v", left)
		}
	})

	t.Run("namespace-exists-and-never-ready", func(t *testing.T) {
		o := runtimeOptions(t, cp)
		o.CPURequest = 1000000 // no node has a thousand CPUs: the pods stay Pending
		rt, err := kuberun.New(o)
		if err != nil {
			t.Fatal(err)
		}
		opts := upOptions(t, rt, images)
		opts.ReadyTimeout = 40 * time.Second
		ns := kubeplan.Namespace(opts.Instance)
		if _, err := cp.Clientset(t).CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		_, err = endpointkit.Up(ctx, lesson, opts)
		if !errors.Is(err, kuberun.ErrNamespaceExists) || !strings.Contains(err.Error(), ns) || !strings.Contains(err.Error(), "--replace") {
			t.Errorf("Up over an existing namespace: %v", err)
		}

		// Replaced; then the pods never become ready: a boot error with
		// the pod's events, and everything removed.
		opts.Replace = true
		_, err = endpointkit.Up(ctx, lesson, opts)
		var be *endpointkit.BootError
		if !errors.As(err, &be) || !strings.Contains(err.Error(), "FailedScheduling") || !strings.Contains(err.Error(), "Insufficient cpu") {
			t.Errorf("Up of pods that never get a node: %v", err)
		}
		if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
			t.Errorf("left after a failed up: %v", left)
		}

		// KeepOnFailure keeps it for inspection; Teardown removes it.
		opts.KeepOnFailure = true
		if _, err := endpointkit.Up(ctx, lesson, opts); !errors.As(err, &be) {
			t.Errorf("Up with KeepOnFailure: %v", err)
		}
		if _, err := cp.Clientset(t).CoreV1().Pods(ns).Get(ctx, "r1", metav1.GetOptions{}); err != nil {
			t.Errorf("KeepOnFailure: pod r1: %v", err)
		}
		if err := endpointkit.Teardown(ctx, endpointkit.InstanceDir(opts.StateRoot, opts.Instance), opts); err != nil {
			t.Fatal(err)
		}
		if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
			t.Errorf("left after teardown: %v", left)
		}
	})
}

// Render prints the objects Up would apply, without a cluster: pods run
// the placement's launch (image in the container, forwards listening on
// the pod's loopback too), images by digest, the lesson directory in a
// ConfigMap.
func TestRender(t *testing.T) {
	im := imagetest.Tiny(t)
	opts := endpointkit.Options{Instance: "tri", Stage: 1, Images: endpointkit.Catalog{Images: map[string]string{"tiny": im.Dir}}}
	p, err := endpointkit.Plan(context.Background(), lessonPath(t, "linux-triangle"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ref := "127.0.0.1:5000/endpointkit/tiny@sha256:" + strings.Repeat("a", 64)
	objs, err := kuberun.Render(context.Background(), p, kuberun.Options{Registry: "127.0.0.1:5000/endpointkit", Images: map[string]string{"tiny": ref}})
	if err != nil {
		t.Fatal(err)
	}
	if objs.Namespace.Name != "ek-tri" || objs.Namespace.Labels[kubeplan.LabelStage] != "1" || len(objs.Pods) != 3 || len(objs.Networks) != 3 {
		t.Fatalf("objects: namespace %s %v, %d pods, %d networks", objs.Namespace.Name, objs.Namespace.Labels, len(objs.Pods), len(objs.Networks))
	}
	pod := objs.Pods[0]
	c := pod.Spec.Containers[0]
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if c.Image != ref || strings.Join(c.Command, " ") != kubeplan.LauncherPath+" run" {
		t.Errorf("container image %s, command %v", c.Image, c.Command)
	}
	for k, v := range map[string]string{"ENDPOINT_IMAGE": kubeplan.ImageDir, "ENDPOINT_NAME": "r1", "ENDPOINT_LISTEN": "0.0.0.0",
		"ENDPOINT_LESSON": kubeplan.LessonDir, "ENDPOINT_FORWARD": "22", "ENDPOINT_INTERFACES": "2"} {
		if env[k] != v {
			t.Errorf("%s=%q, want %q (env %v)", k, env[k], v, env)
		}
	}
	if _, ok := env["ENDPOINT_STATE"]; ok {
		t.Errorf("the container is told this machine's state directory: %v", env)
	}
	// The lesson directory is small: a ConfigMap, no init container.
	if len(pod.Spec.InitContainers) != 0 || objs.Lesson == nil || len(objs.Lesson.Data) != 9 {
		t.Errorf("init containers %+v, lesson ConfigMap %+v", pod.Spec.InitContainers, objs.Lesson)
	}
	var b strings.Builder
	if err := objs.WriteYAML(&b); err != nil || !strings.Contains(b.String(), "kind: NetworkAttachmentDefinition") || !strings.Contains(b.String(), "kind: ConfigMap") {
		t.Errorf("YAML (%v):\n%s", err, b.String())
	}

	// A lesson too large for a ConfigMap goes as a lesson-content image,
	// copied by an init container; without a registry that is an error.
	big := filepath.Join(t.TempDir(), "linux-triangle")
	if err := os.CopyFS(big, os.DirFS(lessonPath(t, "linux-triangle"))); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(big, "stage0", "big.bin"), make([]byte, kubeplan.MaxLessonFiles), 0o644); err != nil {
		t.Fatal(err)
	}
	if p, err = endpointkit.Plan(context.Background(), big, opts); err != nil {
		t.Fatal(err)
	}
	objs, err = kuberun.Render(context.Background(), p, kuberun.Options{Registry: "127.0.0.1:5000/endpointkit", Images: map[string]string{"tiny": ref}})
	if err != nil {
		t.Fatal(err)
	}
	if ic := objs.Pods[0].Spec.InitContainers; objs.Lesson != nil || len(ic) != 1 || !strings.HasPrefix(ic[0].Image, "127.0.0.1:5000/endpointkit/lesson-linux-triangle@sha256:") {
		t.Errorf("large lesson: ConfigMap %v, init containers %+v", objs.Lesson != nil, ic)
	}
	if _, err := kuberun.Render(context.Background(), p, kuberun.Options{Images: map[string]string{"tiny": ref}}); !errors.Is(err, kuberun.ErrLessonTooLarge) {
		t.Errorf("large lesson without a registry: err = %v, want ErrLessonTooLarge", err)
	}
}
