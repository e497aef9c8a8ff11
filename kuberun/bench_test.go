package kuberun_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/kuberun"
)

// BenchmarkKubernetesUp measures Up of linux-triangle — three tiny
// endpoints ready and stage 0 configured — on the test cluster (images
// already on the node: a first Up pulls them and is not counted) and on
// the local runtime, alternating which goes first, and reports both and
// their ratio (goal ≤ 1.5).
//
//	go test -run '^$' -bench KubernetesUp -benchtime 1x ./kuberun
func BenchmarkKubernetesUp(b *testing.B) {
	requireCluster(b)
	images := tinyOCI(b)
	cp := kubetest.StartCluster(b)
	rt, err := kuberun.New(runtimeOptions(b, cp))
	if err != nil {
		b.Fatal(err)
	}
	launcher := goBuild(b, "./cmd/endpoint", endpointkit.LauncherName)
	lesson := lessonPath(b, "linux-triangle")
	ctx := context.Background()
	up := func(rt endpointkit.Runtime) time.Duration {
		opts := upOptions(b, rt, images)
		opts.Launcher = launcher
		// Where the time goes: the last boot (launchers started), ready
		// and configured event of the Up.
		var mu sync.Mutex
		last := map[endpointkit.Step]time.Duration{}
		opts.Progress = func(e endpointkit.Event) {
			mu.Lock()
			last[e.Step] = e.Elapsed
			mu.Unlock()
		}
		t0 := time.Now()
		inst, err := endpointkit.Up(ctx, lesson, opts)
		took := time.Since(t0)
		if err != nil {
			b.Fatal(err)
		}
		where := "Kubernetes"
		if rt == nil {
			where = "local"
		}
		b.Logf("%s: launchers started %.1fs, all ready %.1fs, all configured %.1fs, up %.1fs", where,
			last[endpointkit.StepBoot].Seconds(), last[endpointkit.StepReady].Seconds(), last[endpointkit.StepConfigured].Seconds(), took.Seconds())
		if err := inst.Down(ctx); err != nil {
			b.Fatal(err)
		}
		return took
	}
	b.Logf("warm-up on Kubernetes (push, pull): %.1fs", up(rt).Seconds())
	var kube, local time.Duration
	for i := 0; b.Loop(); i++ {
		var k, l time.Duration
		if i%2 == 0 {
			k, l = up(rt), up(nil)
		} else {
			l, k = up(nil), up(rt)
		}
		kube, local = kube+k, local+l
		b.Logf("run %d: Kubernetes %.1fs, local %.1fs, ratio %.2f", i, k.Seconds(), l.Seconds(), k.Seconds()/l.Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(kube.Seconds()/n, "kube-up-s")
	b.ReportMetric(local.Seconds()/n, "local-up-s")
	b.ReportMetric(kube.Seconds()/local.Seconds(), "kube/local")
	b.ReportMetric(0, "ns/op")
}
