package kubetest

import (
	"context"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"k8s.io/client-go/kubernetes"
)

// buildTimeout bounds a cold build on a loaded 2-CPU machine (`make test`
// builds first, with `make kube-bin`, so tests normally find the cache).
const buildTimeout = 60 * time.Minute

// Binaries returns the cached Kubernetes and Multus build, building it on
// first use. It skips when etcd or the go command is missing.
func Binaries(tb testing.TB) (*Kubernetes, *Multus) {
	tb.Helper()
	ektest.RequireTool(tb, "go", "etcd", "nice")
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	log := TestLogger(tb)
	cache := ektest.CacheDir(tb)
	k, m, err := Build(ctx, cache, log)
	if err != nil {
		tb.Fatal(err)
	}
	return k, m
}

// Start starts a control plane (etcd, kube-apiserver,
// kube-controller-manager, the Multus CRD) for
// the test and stops it, by PID, when the test ends, failing the test if
// anything it started is still running afterwards.
// Each configure function may change the Options before the start (for
// example EtcdOnDisk).
func Start(tb testing.TB, configure ...func(*Options)) *ControlPlane {
	tb.Helper()
	k, m := Binaries(tb)
	dir, err := os.MkdirTemp("", "ekkube-")
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	o := Options{Dir: dir, APIServer: k.APIServer, ControllerManager: k.ControllerManager, CRDs: []string{m.CRD}, Log: TestLogger(tb)}
	for _, f := range configure {
		f(&o)
	}
	if o.Node != nil {
		o.Scheduler = k.Scheduler
		o.Node.Kubelet, o.Node.Multus = k.Kubelet, m.Plugin
	}
	cp, err := StartControlPlane(ctx, o)
	if err != nil {
		os.RemoveAll(dir)
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := cp.Stop(); err != nil {
			tb.Errorf("kubetest: stop: %v (files kept in %s)", err, cp.Dir)
		}
		for _, p := range cp.Processes {
			if p.Running() {
				tb.Errorf("kubetest: %s (pid %d) still running after Stop", p.Name, p.PID)
			}
		}
		if cp.Node != nil {
			for _, l := range cp.Node.Leftovers() {
				tb.Errorf("kubetest: node left %s", l)
			}
		}
		for _, d := range []string{cp.Dir, cp.EtcdDir} {
			if _, err := os.Stat(d); err == nil {
				tb.Errorf("kubetest: %s left behind", d)
			}
		}
	})
	return cp
}

// WithNode makes Start add a node (registry, containerd, CNI with Multus,
// kubelet) and the scheduler: pods run. It needs root, containerd, runc,
// the CNI plugins, docker-registry and busybox-static.
func WithNode(o *Options) {
	o.Node = &NodeOptions{}
}

// StartCluster starts a control plane with a node and the scheduler (see
// WithNode), skipping unless root with the node's tools installed.
func StartCluster(tb testing.TB, configure ...func(*Options)) *ControlPlane {
	tb.Helper()
	RequireNode(tb)
	return Start(tb, append([]func(*Options){WithNode}, configure...)...)
}

// RequireNode skips the test unless a node can run here: root, and
// containerd, runc, ctr, docker-registry, busybox and the CNI plugins
// installed (`make deps`).
func RequireNode(tb testing.TB) {
	tb.Helper()
	ektest.RequireRoot(tb)
	ektest.RequireTool(tb, "containerd", "runc", "ctr", "docker-registry", "busybox")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		tb.Skip("needs the CNI plugins in /usr/lib/cni: run `make deps` (containernetworking-plugins)")
	}
}

// Clientset returns a typed client for the control plane.
func (cp *ControlPlane) Clientset(tb testing.TB) kubernetes.Interface {
	tb.Helper()
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		tb.Fatal(err)
	}
	return cs
}

// TestLogger logs through tb.Log.
func TestLogger(tb testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tbWriter{tb}, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}
