package kubeplan

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/wiring"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// benchInstances is how many lesson instances the apply benchmark makes.
const benchInstances = 100

// renderMany renders n instances of linux-triangle.
func renderMany(tb testing.TB, m *endpoint.Model, prefix string, n int) ([]*Objects, []string) {
	tb.Helper()
	imgs := testImages(m)
	var sets []*Objects
	var names []string
	for i := range n {
		name := fmt.Sprintf("%s-%03d", prefix, i)
		p, err := wiring.NewPlan(m, wiring.Options{Instance: name})
		if err != nil {
			tb.Fatal(err)
		}
		objs, err := Render(m, p, Options{Images: imgs, LessonImage: "127.0.0.1:5000/endpointkit/lesson" + digest("b")})
		if err != nil {
			tb.Fatal(err)
		}
		sets = append(sets, objs)
		names = append(names, name)
	}
	return sets, names
}

// createSerially is Antidote's way: every object created by its own
// request, one after another, instance after instance.
func createSerially(ctx context.Context, a *Applier, sets []*Objects) error {
	for _, s := range sets {
		all, err := s.All()
		if err != nil {
			return err
		}
		for _, u := range all {
			ri, err := a.resource(u)
			if err != nil {
				return err
			}
			if _, err := ri.Create(ctx, u, metav1.CreateOptions{FieldManager: "serial"}); err != nil {
				return fmt.Errorf("create %s %s: %w", u.GetKind(), qualified(u), err)
			}
		}
	}
	return nil
}

// deleteSerially deletes every object by its own request, pods first and
// the namespace last, waiting for each namespace to be gone before the
// next instance.
func deleteSerially(ctx context.Context, a *Applier, sets []*Objects) error {
	for _, s := range sets {
		all, err := s.All()
		if err != nil {
			return err
		}
		for i := len(all) - 1; i >= 0; i-- {
			u := all[i]
			ri, err := a.resource(u)
			if err != nil {
				return err
			}
			if err := ri.Delete(ctx, u.GetName(), metav1.DeleteOptions{}); err != nil {
				return fmt.Errorf("delete %s %s: %w", u.GetKind(), qualified(u), err)
			}
		}
		if err := a.WaitDeleted(ctx, s.Instance); err != nil {
			return err
		}
	}
	return nil
}

// BenchmarkApply100 renders 100 linux-triangle instances (12 objects each)
// and applies them to a real API server (no kubelet: pods stay Pending),
// then deletes them and waits until their namespaces are gone; it does the
// same with every object created, and deleted, one request at a time, in
// the same run, and reports both and their ratios. Run it with
// -benchtime=1x: one iteration is 1200 objects.
func BenchmarkApply100(b *testing.B) {
	cp := kubetest.Start(b)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	a, err := NewApplier(cp.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, _ := loadLesson(b, "linux-triangle", "bench")
	var apply, serial, teardown, serialTeardown time.Duration
	b.ResetTimer()
	for i := range b.N {
		tag := ektest.Name("b")[1:7] + fmt.Sprint(i)

		start := time.Now()
		sets, _ := renderMany(b, m, "s"+tag, benchInstances)
		if err := createSerially(ctx, a, sets); err != nil {
			b.Fatal(err)
		}
		serial += time.Since(start)
		start = time.Now()
		if err := deleteSerially(ctx, a, sets); err != nil {
			b.Fatal(err)
		}
		serialTeardown += time.Since(start)

		start = time.Now()
		sets, names := renderMany(b, m, "a"+tag, benchInstances)
		if err := a.Apply(ctx, sets...); err != nil {
			b.Fatal(err)
		}
		apply += time.Since(start)
		start = time.Now()
		if err := a.Delete(ctx, names...); err != nil {
			b.Fatal(err)
		}
		if err := a.WaitDeleted(ctx, names...); err != nil {
			b.Fatal(err)
		}
		teardown += time.Since(start)
	}
	n := float64(b.N)
	b.ReportMetric(apply.Seconds()/n, "s-apply")
	b.ReportMetric(serial.Seconds()/n, "s-serial-create")
	b.ReportMetric(serial.Seconds()/apply.Seconds(), "x-apply-faster")
	b.ReportMetric(teardown.Seconds()/n, "s-teardown")
	b.ReportMetric(serialTeardown.Seconds()/n, "s-serial-teardown")
	b.ReportMetric(serialTeardown.Seconds()/teardown.Seconds(), "x-teardown-faster")
}
