package endpointkit

import (
	"context"
	"testing"
	"time"
)

// BenchmarkLessonUp measures `Up` of linux-triangle (three tiny endpoints
// booting in parallel, stage 0 configured on each) against its own
// endpoints' boot times and against a lone endpoint booted by Up of a
// one-endpoint lesson in the same iteration. Parallel boot makes up-s
// close to max-boot-s, far from sum-boot-s.
//
//	go test -run '^$' -bench LessonUp -benchtime 5x .
func BenchmarkLessonUp(b *testing.B) {
	requireLaunch(b)
	images := tinyImages(b)
	ctx := context.Background()
	var up, maxBoot, sumBoot, single time.Duration
	for b.Loop() {
		opts := testOptions(b, images)
		opts.Progress = nil
		t0 := time.Now()
		inst, err := Up(ctx, lessonPath(b, "linux-triangle"), opts)
		if err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		up += took
		var mx, sum time.Duration
		for _, e := range inst.Endpoints {
			mx, sum = max(mx, e.Boot), sum+e.Boot
		}
		maxBoot, sumBoot = maxBoot+mx, sumBoot+sum
		if err := inst.Down(ctx); err != nil {
			b.Fatal(err)
		}

		one := testOptions(b, images)
		one.Progress = nil
		lone, err := Up(ctx, singleLesson(b), one)
		if err != nil {
			b.Fatal(err)
		}
		single += lone.Endpoints[0].Boot
		b.Logf("up %.2fs: boots max %.2fs, sum %.2fs; lone endpoint %.2fs", took.Seconds(), mx.Seconds(), sum.Seconds(), lone.Endpoints[0].Boot.Seconds())
		if err := lone.Down(ctx); err != nil {
			b.Fatal(err)
		}
	}
	n := float64(b.N)
	b.ReportMetric(up.Seconds()/n, "up-s")
	b.ReportMetric(maxBoot.Seconds()/n, "max-boot-s")
	b.ReportMetric(sumBoot.Seconds()/n, "sum-boot-s")
	b.ReportMetric(single.Seconds()/n, "lone-boot-s")
	b.ReportMetric(up.Seconds()/maxBoot.Seconds(), "up/max-boot")
	b.ReportMetric(up.Seconds()/single.Seconds(), "up/lone-boot")
	b.ReportMetric(up.Seconds()/sumBoot.Seconds(), "up/sum-boot")
}
