package kubeplan

import (
	"context"
	"fmt"
	"os"
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
// the namespace last, instance after instance.
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
	}
	return nil
}

// phases times the steps of one benchmark iteration.
type phases map[string]time.Duration

func (p phases) time(b *testing.B, name string, f func() error) {
	start := time.Now()
	if err := f(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	d := time.Since(start)
	p[name] += d
	fmt.Fprintf(os.Stderr, "%s: %-20s %v\n", b.Name(), name, d.Round(time.Millisecond))
}

// BenchmarkApply100 renders 100 linux-triangle instances (12 objects each)
// and applies them to a real API server (no kubelet: pods stay Pending),
// then deletes them; it does the same with every object created, and
// deleted, by its own request one after another (Antidote's way), in the
// same run, and reports both and their ratios. Teardown is timed to the
// last delete request answered and, separately, until the cluster's
// namespace controller has removed every namespace. Run it with
// -benchtime=1x: one iteration is 1200 objects.
//
// etcd=disk keeps etcd's data on disk as a production cluster does (every
// write waits for an fsync: about 33 ms on the development machine's
// virtual disk); etcd=tmpfs is the tests' setting (fsync free).
func BenchmarkApply100(b *testing.B) {
	for _, disk := range []bool{true, false} {
		name := "etcd=tmpfs"
		if disk {
			name = "etcd=disk"
		}
		b.Run(name, func(b *testing.B) { benchmarkApply(b, disk) })
	}
}

func benchmarkApply(b *testing.B, etcdOnDisk bool) {
	cp := kubetest.Start(b, func(o *kubetest.Options) { o.EtcdOnDisk = etcdOnDisk })
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	a, err := NewApplier(cp.RESTConfig())
	if err != nil {
		b.Fatal(err)
	}
	m, _ := loadLesson(b, "linux-triangle", "bench")
	p := phases{}
	b.ResetTimer()
	for i := range b.N {
		tag := ektest.Name("b")[1:7] + fmt.Sprint(i)
		var sets []*Objects
		var names []string
		p.time(b, "serial-create", func() error {
			sets, names = renderMany(b, m, "s"+tag, benchInstances)
			return createSerially(ctx, a, sets)
		})
		p.time(b, "serial-delete", func() error { return deleteSerially(ctx, a, sets) })
		p.time(b, "serial-delete-gone", func() error { return a.WaitDeleted(ctx, names...) })
		p.time(b, "apply", func() error {
			sets, names = renderMany(b, m, "a"+tag, benchInstances)
			return a.Apply(ctx, sets...)
		})
		p.time(b, "delete", func() error { return a.Delete(ctx, names...) })
		p.time(b, "delete-gone", func() error { return a.WaitDeleted(ctx, names...) })
	}
	n := float64(b.N)
	sec := func(k string) float64 { return p[k].Seconds() / n }
	b.ReportMetric(sec("apply"), "s-apply")
	b.ReportMetric(sec("serial-create"), "s-serial-create")
	b.ReportMetric(sec("serial-create")/sec("apply"), "x-apply-faster")
	b.ReportMetric(sec("delete"), "s-delete")
	b.ReportMetric(sec("serial-delete"), "s-serial-delete")
	b.ReportMetric(sec("serial-delete")/sec("delete"), "x-delete-faster")
	b.ReportMetric(sec("delete")+sec("delete-gone"), "s-teardown-gone")
	b.ReportMetric(sec("serial-delete")+sec("serial-delete-gone"), "s-serial-teardown-gone")
	b.ReportMetric((sec("serial-delete")+sec("serial-delete-gone"))/(sec("delete")+sec("delete-gone")), "x-teardown-gone-faster")
}
