package imagebuild

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// BenchmarkTinyBuild compares a cold build of the tiny image (fresh cache
// holding only the downloaded kernel package: extract, depmod, vmlinux,
// agent link, pack) with an unchanged rebuild (cache hit).
func BenchmarkTinyBuild(b *testing.B) {
	benchColdVsCached(b, "tiny", func(tb testing.TB) Options { return Options{CacheDir: coldCache(tb)} })
}

// BenchmarkDebootstrapBuild compares a cold debootstrap build (NoCache:
// debootstrap with its package cache, configure, mkfs, qcow2) with an
// unchanged rebuild. Needs root; about a minute per cold build.
func BenchmarkDebootstrapBuild(b *testing.B) {
	ektest.RequireRoot(b)
	ektest.RequireTool(b, "debootstrap", "mkfs.ext4", "qemu-img")
	benchColdVsCached(b, "debian", func(tb testing.TB) Options {
		return Options{CacheDir: filepath.Join(ektest.CacheDir(tb), "imagebuild"), NoCache: true}
	})
}

func benchColdVsCached(b *testing.B, recipe string, coldOpts func(testing.TB) Options) {
	ctx := context.Background()
	var cold, hit time.Duration
	for i := 0; i < b.N; i++ {
		opts := coldOpts(b)
		out := filepath.Join(b.TempDir(), recipe)
		res, err := testBuilder(b, opts).Build(ctx, loadExample(b, recipe), out)
		if err != nil {
			b.Fatal(err)
		}
		cold += res.Elapsed
		opts.NoCache = false
		res, err = testBuilder(b, opts).Build(ctx, loadExample(b, recipe), out)
		if err != nil {
			b.Fatal(err)
		}
		if !res.Cached {
			b.Fatal("rebuild was not a cache hit")
		}
		hit += res.Elapsed
	}
	n := float64(b.N)
	b.ReportMetric(cold.Seconds()/n, "cold-s")
	b.ReportMetric(hit.Seconds()/n, "cached-s")
	b.ReportMetric(100*hit.Seconds()/cold.Seconds(), "cached-%-of-cold")
}
