package kuberun_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// requireCluster skips unless a cluster with a node and QEMU guests can
// run here.
func requireCluster(tb testing.TB) {
	tb.Helper()
	kubetest.RequireNode(tb)
	ektest.RequireQEMU(tb)
	ektest.RequireTool(tb, "go")
}

// logWriter sends lines to the test log while the test runs.
type logWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(tb testing.TB) *slog.Logger {
	lw := &logWriter{tb: tb}
	tb.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	return slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// runtimeOptions are the runtime's options for the test cluster: its
// kubeconfig, its registry, the test image cache.
func runtimeOptions(tb testing.TB, cp *kubetest.ControlPlane) kuberun.Options {
	return kuberun.Options{
		Kubeconfig: cp.Kubeconfig,
		Registry:   cp.Node.Registry + "/endpointkit",
		Push:       imagebuild.PushOptions{StateFile: "-"},
		Build:      imagebuild.Options{CacheDir: filepath.Join(ektest.CacheDir(tb), "imagebuild"), GoDir: ektest.RepoRoot(tb)},
		Logger:     testLogger(tb),
	}
}

// upOptions are endpointkit Options for an instance on the runtime: a
// random name, a private state root, TCG, the given image directories.
func upOptions(tb testing.TB, rt endpointkit.Runtime, images map[string]string) endpointkit.Options {
	root, err := os.MkdirTemp("/run", "ekk")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	return endpointkit.Options{
		Instance:  ektest.Name("ekk"),
		StateRoot: root,
		Accel:     "tcg",
		Runtime:   rt,
		Images:    endpointkit.Catalog{Images: images, Dirs: []string{filepath.Join(root, "no-images")}},
		Logger:    testLogger(tb),
		Progress: func(e endpointkit.Event) {
			if e.Err != nil {
				tb.Logf("%6.2fs %-10s %s: %s", e.Elapsed.Seconds(), e.Step, e.Message, text.FirstLine(e.Err.Error()))
				return
			}
			tb.Logf("%6.2fs %-10s %s", e.Elapsed.Seconds(), e.Step, e.Message)
		},
	}
}

// lessonPath is an example lesson of the repository.
func lessonPath(tb testing.TB, name string) string {
	return filepath.Join(ektest.RepoRoot(tb), "examples", "lessons", name)
}

// tinyOCI is the tiny image with a fresh OCI layout, by slug.
func tinyOCI(tb testing.TB) map[string]string {
	return map[string]string{"tiny": imagetest.OCI(tb, "tiny").Dir}
}

// downAtEnd removes the instance when the test ends, whatever happened.
func downAtEnd(tb testing.TB, opts endpointkit.Options) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		if err := endpointkit.Teardown(ctx, endpointkit.InstanceDir(opts.StateRoot, opts.Instance), opts); err != nil {
			tb.Errorf("teardown: %v", err)
		}
	})
}

// nodeLeftovers lists what of an instance is on the cluster and the node:
// its namespace, pods, link bridges (host network: the node is this
// machine).
func nodeLeftovers(ctx context.Context, tb testing.TB, cp *kubetest.ControlPlane, instance string) []string {
	tb.Helper()
	cs := cp.Clientset(tb)
	var left []string
	ns := kubeplan.Namespace(instance)
	if _, err := cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{}); err == nil {
		left = append(left, "namespace "+ns)
	}
	if pods, err := cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{}); err == nil {
		for _, p := range pods.Items {
			left = append(left, "pod "+p.Name)
		}
	}
	prefix := kubeplan.BridgeName(instance, 0, -1)
	prefix = prefix[:len(prefix)-2] // ek<hash>: every bridge of the instance
	links, _ := netlink.LinkList()
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			left = append(left, fmt.Sprintf("bridge %s (%s)", l.Attrs().Name, l.Type()))
		}
	}
	return left
}

// goBuild builds the command of package pkg (relative to the repository)
// as NAME in a directory of the test.
func goBuild(tb testing.TB, pkg, name string) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", bin, pkg)
	cmd.Dir = ektest.RepoRoot(tb)
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	return bin
}

// lessonCmd runs the lesson command with args, passes its standard error
// (progress records) to the test log as it comes, and returns its
// standard output; a failure fails the test.
func lessonCmd(ctx context.Context, tb testing.TB, bin string, args ...string) string {
	tb.Helper()
	var stdout bytes.Buffer
	lw := &logWriter{tb: tb}
	defer func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() }()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &stdout, lw
	err := cmd.Run()
	tb.Logf("lesson %s:\n%s", strings.Join(args, " "), stdout.String())
	if err != nil {
		tb.Fatalf("lesson %s: %v", args[0], err)
	}
	return stdout.String()
}
