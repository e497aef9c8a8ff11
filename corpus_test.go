package endpointkit

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"golang.org/x/sync/semaphore"
)

// The NRE Labs corpus (../shared/corpus) as this checkout runs it: the
// lessons whose images are all built from open recipes in
// examples/images, and, for every other lesson, the images it needs.
var (
	corpusRunnable = []string{
		"bash-introduction", "free-range-routing-introduction", "jinja-configuration-templates",
		"linux-basics", "python-introduction", "yaml-introduction",
	}
	// corpusFixtures are corpus entries that are not lessons to run.
	corpusFixtures = map[string]string{
		"antidote-core-validlesson1": "antidote-core's ingest fixture: its configs are empty files, and its napalm (Junos) config targets a Linux utility endpoint",
	}
	// vendorImages are the images of network operating systems whose
	// disks are the vendors' (no open recipe can build them).
	vendorImages = map[string]string{
		"vqfx-snap1": "Juniper vQFX", "vqfx-snap2": "Juniper vQFX", "vqfx-snap3": "Juniper vQFX",
		"container-vqfx": "Juniper vQFX", "crpd": "Juniper cRPD", "cvx": "NVIDIA Cumulus VX",
	}
)

// corpusVMs bounds how many VMs the corpus lessons run at once: lessons
// come up a few at a time, each whole (free-range-routing-introduction
// has three endpoints, the utility lessons one).
const corpusVMs = 4

// corpusLesson is one lesson of the corpus and what it needs.
type corpusLesson struct {
	lesson  *lessonmeta.Lesson
	images  []string // slugs, sorted
	missing []string // images with no recipe in examples/images
}

// loadCorpus reads every lesson of the shared corpus and sorts out which
// images have an open recipe here.
func loadCorpus(tb testing.TB, shared, recipes string) []corpusLesson {
	tb.Helper()
	dirs, err := filepath.Glob(filepath.Join(shared, "corpus", "lessons", "*", "lesson.meta.yaml"))
	if err != nil || len(dirs) == 0 {
		tb.Fatalf("no corpus lessons under %s: %v", shared, err)
	}
	var out []corpusLesson
	for _, meta := range dirs {
		l, err := lessonmeta.Load(filepath.Dir(meta), lessonmeta.Options{})
		if err != nil {
			tb.Fatalf("corpus lesson %s: %v", filepath.Dir(meta), err)
		}
		cl := corpusLesson{lesson: l}
		for _, e := range l.Endpoints {
			if slices.Contains(cl.images, e.Image) {
				continue
			}
			cl.images = append(cl.images, e.Image)
			if _, err := os.Stat(filepath.Join(recipes, e.Image, imagebuild.RecipeFile)); err != nil {
				cl.missing = append(cl.missing, e.Image)
			}
		}
		sort.Strings(cl.images)
		sort.Strings(cl.missing)
		out = append(out, cl)
	}
	return out
}

// TestCorpusLessonsRun brings up every lesson of the NRE Labs corpus whose
// images are all built from open recipes (examples/images), unmodified:
// it configures each stage in turn, checks what the lesson's
// configuration and guide intend — addresses on the interfaces the
// lesson's files name, links that ping, hostnames, services and daemons
// running, BGP sessions Established and their routes working, the
// commands the guides have learners type — and downs it. The python
// configs run with Debian's python3 (ektest.DebianPython). Lessons needing
// other images are listed with the images they need. Lessons come up a
// few at a time (corpusVMs VMs), sharing the images other tests build.
func TestCorpusLessonsRun(t *testing.T) {
	requireLaunch(t)
	shared := ektest.SharedDir(t)
	py := ektest.DebianPython(t, "paramiko", "scp", "requests")
	recipes := filepath.Join(ektest.RepoRoot(t), "examples", "images")
	lessons := loadCorpus(t, shared, recipes)

	var run []corpusLesson
	for _, cl := range lessons {
		slug := filepath.Base(cl.lesson.Dir)
		switch {
		case corpusFixtures[slug] != "":
			t.Logf("%s: not run: %s", slug, corpusFixtures[slug])
		case len(cl.missing) > 0:
			var needs []string
			for _, im := range cl.missing {
				if v := vendorImages[im]; v != "" {
					needs = append(needs, im+" (vendor image: "+v+")")
				} else {
					needs = append(needs, im+" (no recipe here yet)")
				}
			}
			t.Logf("%s: not run: needs %s", slug, strings.Join(needs, ", "))
		default:
			run = append(run, cl)
		}
	}
	var names []string
	for _, cl := range run {
		names = append(names, filepath.Base(cl.lesson.Dir))
	}
	if strings.Join(names, " ") != strings.Join(corpusRunnable, " ") {
		t.Fatalf("lessons on open images: %v; want %v (update corpusRunnable, the README and docs/performance.md together)", names, corpusRunnable)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Minute)
	defer cancel()
	vms := semaphore.NewWeighted(corpusVMs)
	start := time.Now()
	t.Run("lessons", func(t *testing.T) {
		for _, cl := range run {
			t.Run(cl.lesson.Slug, func(t *testing.T) {
				t.Parallel()
				images := map[string]string{}
				for _, im := range cl.images { // built once, shared with other tests
					images[im] = imagetest.Build(t, im).Dir
				}
				n := int64(min(len(cl.lesson.Endpoints), corpusVMs))
				if err := vms.Acquire(ctx, n); err != nil {
					t.Fatal(err)
				}
				defer vms.Release(n)
				runCorpusLesson(ctx, t, cl, images, py)
			})
		}
	})
	t.Logf("corpus lessons up, configured stage by stage, checked and down in %.0fs (at most %d VMs at once)",
		time.Since(start).Seconds(), corpusVMs)
}

// runCorpusLesson brings one lesson up, configures and checks each stage,
// and takes it down.
func runCorpusLesson(ctx context.Context, t *testing.T, cl corpusLesson, images map[string]string, py string) {
	opts := testOptions(t, images)
	opts.Configurators = map[endpoint.Method]configure.Configurator{endpoint.MethodPython: &configure.Python{Interpreter: py}}
	downAtEnd(t, opts)
	t0 := time.Now()
	inst, err := Up(ctx, cl.lesson.Dir, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	up := time.Since(t0)
	hostLink := hostLinkOf(t, opts)
	_, m, _, err := loadModel(inst.LessonDir, inst.Name, inst.imageDirs())
	if err != nil {
		t.Fatal(err)
	}
	for stage := range m.StageCount {
		if stage > 0 {
			if err := inst.Configure(ctx, stage); err != nil {
				t.Fatalf("Configure(%d): %v", stage, err)
			}
		}
		checkStage(ctx, t, inst, corpusChecks(t, cl.lesson, m, stage))
	}
	if cl.lesson.Slug == "linux-basics" { // Debian's sshd (MaxSessions), on the utility image
		runSessions(ctx, t, py, inst, m.Endpoints[0].Name)
	}
	t1 := time.Now()
	if err := inst.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertClean(t, opts, hostLink)
	t.Logf("%s: %d endpoints, %d stages: up and stage 0 in %.0fs, all checked and down in %.0fs (down %.0fs)",
		cl.lesson.Slug, len(m.Endpoints), m.StageCount, up.Seconds(), time.Since(t0).Seconds(), time.Since(t1).Seconds())
}
