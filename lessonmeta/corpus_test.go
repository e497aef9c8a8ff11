package lessonmeta

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// corpus returns the shared corpus directory (skipping when absent).
func corpus(tb testing.TB) string {
	tb.Helper()
	return filepath.Join(ektest.SharedDir(tb), "corpus")
}

func corpusLessonDirs(tb testing.TB) []string {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(corpus(tb), "lessons", "*", LessonFile))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no corpus lessons: %v", err)
	}
	dirs := make([]string, len(files))
	for i, f := range files {
		dirs[i] = filepath.Dir(f)
	}
	return dirs
}

// imagesWithoutMeta are the corpus images lessons use that have no
// image.meta.yaml (see the corpus README).
var imagesWithoutMeta = []string{"container-vqfx", "frr", "kali", "wordpress"}

func TestCorpusLessonsValidate(t *testing.T) {
	images := ImageDirs{filepath.Join(corpus(t), "images")}
	for _, dir := range corpusLessonDirs(t) {
		t.Run(filepath.Base(dir), func(t *testing.T) {
			l, err := Load(dir, Options{Images: images})
			if err != nil {
				t.Fatalf("corpus lesson is invalid:\n%v", err)
			}
			for _, w := range l.Warnings {
				if !errors.Is(w, ErrReference) || !slices.ContainsFunc(imagesWithoutMeta, func(im string) bool {
					return strings.Contains(w.Message, `image "`+im+`"`)
				}) {
					t.Errorf("unexpected warning: %v", w)
				}
			}
			for _, ep := range l.Endpoints {
				if ep.ConfigurationType == ConfigNone {
					continue
				}
				if len(ep.Configs) != len(l.Stages) {
					t.Errorf("%s: %d configs for %d stages", ep.Name, len(ep.Configs), len(l.Stages))
				}
				for _, c := range ep.Configs {
					if st, err := os.Stat(c.Path); err != nil || !st.Mode().IsRegular() {
						t.Errorf("%s stage %d: config %q is not a file", ep.Name, c.Stage, c.Path)
					}
				}
			}
			for _, s := range l.Stages {
				if _, err := os.Stat(s.Guide); err != nil {
					t.Errorf("stage %d guide %q: %v", s.Index, s.Guide, err)
				}
			}
		})
	}
}

// TestCorpusStrictParseIsClean: the real lessons carry no unknown keys, so
// they pass --strict too.
func TestCorpusStrictParseIsClean(t *testing.T) {
	for _, dir := range corpusLessonDirs(t) {
		if _, err := Load(dir, Options{Strict: true}); err != nil {
			t.Errorf("%s: %v", dir, err)
		}
	}
}

func TestCorpusImagesAndCollections(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(corpus(t), "images", "*", ImageFile))
	if len(files) < 10 {
		t.Fatalf("only %d image metafiles", len(files))
	}
	for _, f := range files {
		im, err := LoadImage(f, Options{})
		if err != nil {
			t.Errorf("%v", err)
			continue
		}
		if im.Slug != filepath.Base(filepath.Dir(f)) || im.SSHUser == "" || im.Flavor == "" {
			t.Errorf("%s: %+v", f, im)
		}
	}
	im, err := ImageDirs{filepath.Join(corpus(t), "images")}.Image("crpd")
	if err != nil || !im.EnableForwarding || im.SSHUser != "root" || im.Flavor != FlavorUntrusted {
		t.Errorf("crpd = %+v, %v", im, err)
	}
	if _, err := (ImageDirs{filepath.Join(corpus(t), "images")}).Image("frr"); !errors.Is(err, ErrNoImage) {
		t.Errorf("frr: want ErrNoImage, got %v", err)
	}
}

// TestCorpusCurriculum validates the corpus as a whole curriculum. It is a
// subset of the real one: stig-automated-compliance names a prerequisite
// lesson the corpus does not carry, and that is the one error.
func TestCorpusCurriculum(t *testing.T) {
	cur, err := LoadCurriculum(corpus(t), Options{})
	if cur.Meta == nil || cur.Meta.Name != "antidote-test-curriculum" {
		t.Errorf("curriculum meta = %+v", cur.Meta)
	}
	if len(cur.Lessons) != len(corpusLessonDirs(t)) || len(cur.Collections) != 1 || len(cur.Images) < 10 {
		t.Errorf("%d lessons, %d collections, %d images", len(cur.Lessons), len(cur.Collections), len(cur.Images))
	}
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want a *ValidationError, got %v", err)
	}
	errs := ve.Errors()
	if len(errs) != 1 || !errors.Is(errs[0], ErrReference) || errs[0].Field != "prereqs[0]" ||
		!strings.Contains(errs[0].File, "stig-automated-compliance") || errs[0].Pos.Line != 8 {
		t.Errorf("want exactly stig's missing prerequisite, got:\n%v", err)
	}
	var imageWarnings int
	for _, w := range ve.Warnings() {
		if strings.Contains(w.Message, "has no image.meta.yaml") {
			imageWarnings++
		}
	}
	if imageWarnings != len(imagesWithoutMeta) {
		t.Errorf("%d missing-image warnings, want %d:\n%v", imageWarnings, len(imagesWithoutMeta), joinProblems(ve.Warnings()))
	}
}

func corpusLegacyFiles(tb testing.TB) []string {
	files, _ := filepath.Glob(filepath.Join(corpus(tb), "legacy", "*", LessonFile))
	if len(files) < 5 {
		tb.Fatalf("only %d legacy files", len(files))
	}
	return files
}

func TestCorpusLegacyRejectedByStrictParse(t *testing.T) {
	for _, f := range corpusLegacyFiles(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		_, err = Parse(f, data, Options{Strict: true})
		if !errors.Is(err, ErrLegacyFormat) {
			t.Errorf("%s: want ErrLegacyFormat, got %v", f, err)
		}
	}
}

func TestCorpusLegacyMigrates(t *testing.T) {
	want := map[string]Format{
		"legacy-v0.1.0-lesson-12":     FormatSyringeV01,
		"legacy-v0.1.0-lesson-13":     FormatSyringeV01,
		"legacy-v0.3.0-lesson-15":     FormatSyringeV03,
		"legacy-v0.3.2-lesson-13":     FormatSyringeV03,
		"legacy-v1.0.0-lesson-1-demo": FormatSyringeV04,
	}
	for _, f := range corpusLegacyFiles(t) {
		name := filepath.Base(filepath.Dir(f))
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Migrate(f, data)
			if err != nil {
				t.Fatalf("migrate: %v", err)
			}
			if w, ok := want[name]; ok && m.From != w {
				t.Errorf("format %q, want %q", m.From, w)
			}
			if len(m.Warnings) != 0 {
				t.Errorf("warnings: %v", m.Warnings)
			}
			if len(m.Notes) == 0 {
				t.Error("no migration notes")
			}
			out, err := m.YAML()
			if err != nil {
				t.Fatal(err)
			}
			// The converted file is a strictly valid current-format
			// metafile.
			raw, err := Parse("migrated.yaml", out, Options{Strict: true})
			if err != nil {
				t.Fatalf("migrated YAML does not parse:\n%v\n%s", err, out)
			}
			if _, err := Validate(raw, nil, Options{}); err != nil {
				t.Fatalf("migrated lesson is invalid:\n%v\n%s", err, out)
			}
		})
	}
}

// TestLegacyV01ConfigsMoveWithStages checks the v0.1 conversion against
// the files the lesson really has.
func TestLegacyV01ConfigsMoveWithStages(t *testing.T) {
	dir := filepath.Join(corpus(t), "legacy", "legacy-v0.1.0-lesson-12")
	data, err := os.ReadFile(filepath.Join(dir, LessonFile))
	if err != nil {
		t.Fatal(err)
	}
	m, err := Migrate("lesson.meta.yaml", data)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, r := range m.Renames {
		got[r.From] = r.To
	}
	for _, s := range []string{"1", "2"} {
		for _, ep := range []string{"vqfx1", "vqfx2", "vqfx3"} {
			from := "stage" + s + "/configs/" + ep + ".txt"
			if _, err := os.Stat(filepath.Join(dir, from)); err != nil {
				t.Fatalf("corpus file %s: %v", from, err)
			}
			to := map[string]string{"1": "stage0", "2": "stage1"}[s] + "/configs/" + ep + "-junos.txt"
			if got[from] != to {
				t.Errorf("rename %s -> %q, want %q", from, got[from], to)
			}
		}
	}
}

func TestMigrateRejectsEscapingConfigPaths(t *testing.T) {
	src := `lessonName: Escape
lessonID: 1
category: tools
devices:
- name: vqfx1
  image: antidotelabs/vqfx:snap1
stages:
  1:
    description: one
    configs:
      vqfx1: ../../etc/passwd
`
	_, err := Migrate("syringe.yaml", []byte(src))
	if !errors.Is(err, ErrUnsafePath) {
		t.Fatalf("want ErrUnsafePath, got %v", err)
	}
	var p *Problem
	if !errors.As(err, &p) || p.Pos.Line != 11 || p.Field != "stages.1.configs.vqfx1" {
		t.Fatalf("problem = %v", p)
	}
}
