package imagebuild

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"gopkg.in/yaml.v3"
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

// BenchmarkParseRecipe decodes every example recipe with ParseRecipe (all
// problems in one pass, positions kept) and, in the same run, with the
// plain alternative: yaml.v3 with KnownFields into the same type (first
// error only, no positions), and reports the ratio.
func BenchmarkParseRecipe(b *testing.B) {
	paths, _ := filepath.Glob("../examples/images/*/image.yaml")
	var raws [][]byte
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		raws = append(raws, raw)
	}
	if len(raws) == 0 {
		b.Fatal("no example recipes")
	}
	for b.Loop() {
		for _, raw := range raws {
			if _, err := ParseRecipe("image.yaml", raw); err != nil {
				b.Fatal(err)
			}
		}
	}
	perSet := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	b.StopTimer()
	start := time.Now()
	for range b.N {
		for _, raw := range raws {
			dec := yaml.NewDecoder(bytes.NewReader(raw))
			dec.KnownFields(true)
			var r Recipe
			if err := dec.Decode(&r); err != nil {
				b.Fatal(err)
			}
		}
	}
	plain := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(perSet/1e3, "µs/recipes")
	b.ReportMetric(plain/1e3, "plain-µs/recipes")
	b.ReportMetric(float64(len(raws)), "recipes")
	b.ReportMetric(perSet/plain, "x-plain-knownfields")
}
