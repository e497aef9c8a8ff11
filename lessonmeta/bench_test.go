package lessonmeta

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// BenchmarkValidateCorpus loads every corpus lesson as `lesson validate`
// does: read, parse with positions, check every rule, resolve guides and
// config files on disk, look images up. In the same run it times the plain
// alternative, yaml.v3 Unmarshal of the same files into the Raw types
// (no positions, no rules, no file checks), and reports the ratio.
func BenchmarkValidateCorpus(b *testing.B) {
	dirs := corpusLessonDirs(b)
	images := ImageDirs{filepath.Join(corpus(b), "images")}
	plainDecode := func() {
		for _, d := range dirs {
			data, err := os.ReadFile(filepath.Join(d, LessonFile))
			if err != nil {
				b.Fatal(err)
			}
			var raw RawLesson
			if err := yaml.Unmarshal(data, &raw); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ResetTimer()
	for b.Loop() {
		for _, d := range dirs {
			if _, err := Load(d, Options{Images: images}); err != nil {
				b.Fatal(err)
			}
		}
	}
	perCorpus := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
	// The baseline, timed over as many rounds outside the measured loop
	// (testing.Benchmark cannot nest inside a running benchmark).
	b.StopTimer()
	start := time.Now()
	for range b.N {
		plainDecode()
	}
	plain := float64(time.Since(start).Nanoseconds()) / float64(b.N)
	b.ReportMetric(perCorpus/1e6, "ms/corpus")
	b.ReportMetric(plain/1e6, "plain-ms/corpus")
	b.ReportMetric(float64(len(dirs)), "lessons")
	b.ReportMetric(perCorpus/plain, "x-plain-unmarshal")
}
