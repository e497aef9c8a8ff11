package kubeplan

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
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

// phases times the steps of one benchmark iteration: wall time, and the
// CPU time the API server and etcd (server) and this process (client)
// spent, which a loaded machine changes less.
type phases struct {
	cp                   *kubetest.ControlPlane
	wall, server, client map[string]time.Duration
}

func newPhases(cp *kubetest.ControlPlane) *phases {
	return &phases{cp: cp, wall: map[string]time.Duration{}, server: map[string]time.Duration{}, client: map[string]time.Duration{}}
}

func (p *phases) time(b *testing.B, name string, f func() error) {
	s0, c0 := p.cpu(), selfCPU()
	start := time.Now()
	if err := f(); err != nil {
		b.Fatalf("%s: %v", name, err)
	}
	d := time.Since(start)
	server, client := p.cpu()-s0, selfCPU()-c0
	p.wall[name] += d
	p.server[name] += server
	p.client[name] += client
	fmt.Fprintf(os.Stderr, "%s: %-20s %v (CPU: API server and etcd %v, client %v)\n", b.Name(), name,
		d.Round(time.Millisecond), server.Round(time.Millisecond), client.Round(time.Millisecond))
}

// cpu is the CPU time kube-apiserver and etcd have used.
func (p *phases) cpu() time.Duration {
	var t time.Duration
	for _, proc := range p.cp.Processes {
		if proc.Name == "kube-apiserver" || proc.Name == "etcd" {
			t += procCPU(proc.PID)
		}
	}
	return t
}

// procCPU is a process's user and system time from /proc (0 if gone).
func procCPU(pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command's closing parenthesis: utime and stime
	// are the 12th and 13th, in clock ticks (100 a second on Linux).
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return time.Duration(u+k) * 10 * time.Millisecond
}

// selfCPU is the CPU time this process has used.
func selfCPU() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkApply100 renders 100 linux-triangle instances (13 objects each)
// and applies them to a real API server (no kubelet: pods stay Pending),
// then deletes them; it does the same with every object created, and
// deleted, by its own request one after another (Antidote's way), in the
// same run, and reports both and their ratios. Teardown is timed to the
// last delete request answered and, separately, until the cluster's
// namespace controller has removed every namespace. It also reports the
// CPU time per object of the API server and etcd (server) and of this
// process (client) for the apply and the serial create: on a small machine
// the wall-clock ratio is bounded by that CPU, not by waiting. Run it with
// -benchtime=1x: one iteration is 1300 objects.
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
	p := newPhases(cp)
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
	sec := func(k string) float64 { return p.wall[k].Seconds() / n }
	b.ReportMetric(sec("apply"), "s-apply")
	b.ReportMetric(sec("serial-create"), "s-serial-create")
	b.ReportMetric(sec("serial-create")/sec("apply"), "x-apply-faster")
	b.ReportMetric(sec("delete"), "s-delete")
	b.ReportMetric(sec("serial-delete"), "s-serial-delete")
	b.ReportMetric(sec("serial-delete")/sec("delete"), "x-delete-faster")
	b.ReportMetric(sec("delete")+sec("delete-gone"), "s-teardown-gone")
	b.ReportMetric(sec("serial-delete")+sec("serial-delete-gone"), "s-serial-teardown-gone")
	b.ReportMetric((sec("serial-delete")+sec("serial-delete-gone"))/(sec("delete")+sec("delete-gone")), "x-teardown-gone-faster")
	// CPU per object, server (API server + etcd) and client.
	objects := n * benchInstances * float64(objectsPerInstance(b, m))
	for _, k := range []string{"apply", "serial-create"} {
		b.ReportMetric(float64(p.server[k].Microseconds())/1000/objects, "ms-server-cpu/obj-"+k)
		b.ReportMetric(float64(p.client[k].Microseconds())/1000/objects, "ms-client-cpu/obj-"+k)
	}
}

// objectsPerInstance is how many objects one rendered instance has.
func objectsPerInstance(b *testing.B, m *endpoint.Model) int {
	sets, _ := renderMany(b, m, "count", 1)
	all, err := sets[0].All()
	if err != nil {
		b.Fatal(err)
	}
	return len(all)
}
