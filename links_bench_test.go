package endpointkit

import (
	"context"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// BenchmarkLinkAdd measures live topology on linux-triangle under TCG:
// `link add r1 r2 --subnet` to the first ping answered across the new link
// (from r1, over an SSH session opened before), and `link del` of it;
// against, in the same run, the plain alternative: the instance brought
// down and up again from the lesson with that link in it (a fourth
// connection, its stage-0 scripts addressing it), to the same first ping.
// Reported: add-ping-s, del-s, redo-ping-s and redo/add.
func BenchmarkLinkAdd(b *testing.B) {
	requireLaunch(b)
	images := tinyImages(b)
	ctx := context.Background()
	withLink := lessonWithLink(b)
	var addPing, del, redo time.Duration
	for b.Loop() {
		opts := testOptions(b, images)
		opts.Progress = nil
		inst, err := Up(ctx, lessonPath(b, "linux-triangle"), opts)
		if err != nil {
			b.Fatal(err)
		}
		r1, err := inst.DialSSH(ctx, "r1")
		if err != nil {
			b.Fatal(err)
		}
		t0 := time.Now()
		if _, err := inst.AddLink(ctx, "r1", "r2", netip.MustParsePrefix("10.99.0.0/24")); err != nil {
			b.Fatal(err)
		}
		added := time.Since(t0)
		if _, err := r1.Run(ctx, "for i in $(seq 100); do ping -c 1 -W 1 10.99.0.3 >/dev/null 2>&1 && exit 0; done; exit 1"); err != nil {
			b.Fatal(err)
		}
		ap := time.Since(t0)
		r1.Close()
		t1 := time.Now()
		if _, err := inst.RemoveLink(ctx, "r1", "eth3"); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t1)

		// The alternative: down, up with the link in the lesson, ping.
		t2 := time.Now()
		if err := inst.Down(ctx); err != nil {
			b.Fatal(err)
		}
		again, err := Up(ctx, withLink, opts)
		if err != nil {
			b.Fatal(err)
		}
		if err := again.Ping(ctx, "r1", netip.MustParseAddr("10.99.0.3")); err != nil {
			b.Fatal(err)
		}
		rd := time.Since(t2)
		if err := again.Down(ctx); err != nil {
			b.Fatal(err)
		}
		addPing, del, redo = addPing+ap, del+d, redo+rd
		b.Logf("link add %.2fs, first ping %.2fs after it began; link del %.2fs; down+up with the link to the first ping %.1fs (load %s)",
			added.Seconds(), ap.Seconds(), d.Seconds(), rd.Seconds(), loadAverage())
	}
	n := float64(b.N)
	b.ReportMetric(addPing.Seconds()/n, "add-ping-s")
	b.ReportMetric(del.Seconds()/n, "del-s")
	b.ReportMetric(redo.Seconds()/n, "redo-ping-s")
	b.ReportMetric(redo.Seconds()/addPing.Seconds(), "redo/add")
	b.ReportMetric(0, "ns/op")
}

// lessonWithLink is a copy of linux-triangle with a fourth connection,
// r1–r2 on 10.99.0.0/24, addressed by its stage-0 scripts (r1 eth3 .2, r2
// eth3 .3): the lesson a link added live stands for.
func lessonWithLink(tb testing.TB) string {
	tb.Helper()
	dir := filepath.Join(tb.TempDir(), "linux-triangle")
	if out, err := exec.Command("cp", "-r", lessonPath(tb, "linux-triangle"), dir).CombinedOutput(); err != nil {
		tb.Fatalf("cp: %v %s", err, out)
	}
	meta := filepath.Join(dir, "lesson.meta.yaml")
	raw, err := os.ReadFile(meta)
	if err != nil {
		tb.Fatal(err)
	}
	s := strings.Replace(string(raw), "\nstages:", "\n  - a: r1\n    b: r2\n    subnet: 10.99.0.0/24\n\nstages:", 1)
	if err := os.WriteFile(meta, []byte(s), 0o644); err != nil {
		tb.Fatal(err)
	}
	for ep, addr := range map[string]string{"r1": "10.99.0.2/24", "r2": "10.99.0.3/24"} {
		f, err := os.OpenFile(filepath.Join(dir, "stage0", "configs", ep+".sh"), os.O_APPEND|os.O_WRONLY, 0)
		if err != nil {
			tb.Fatal(err)
		}
		f.WriteString("sudo ip addr flush dev eth3\nsudo ip addr add " + addr + " dev eth3\nsudo ip link set eth3 up\n")
		f.Close()
	}
	return dir
}
