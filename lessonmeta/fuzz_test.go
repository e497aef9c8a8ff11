package lessonmeta

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

// FuzzParse feeds arbitrary bytes to every parser of the package (lesson,
// image, collection and curriculum metafiles, and the legacy migrator) and
// checks that none panics and that every failure is reported as positioned
// problems.
func FuzzParse(f *testing.F) {
	f.Add([]byte(baseLesson))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("stages:\n  1:\n    configs: {r1: ../x}\nlessonID: 1\ndevices: [{name: r1}]\n"))
	f.Add([]byte("lessonId: 2\nendpoints: [{name: x, configurationType: napalm-junos}]\nstages: [{id: 1}]\n"))
	f.Add([]byte("slug: x\nflavor: trusted\nnetworkInterfaces: [eth0, eth0]\n"))
	f.Add([]byte("<<: {name: x}\n"))
	for _, glob := range []string{"../examples/lessons/*/" + LessonFile, "../../shared/corpus/*/*/*.meta.yaml"} {
		files, _ := filepath.Glob(glob)
		for _, file := range files {
			if data, err := os.ReadFile(file); err == nil {
				f.Add(data)
			}
		}
	}
	fsys := fstest.MapFS{"stage0/guide.md": {Data: []byte("x")}}
	f.Fuzz(func(t *testing.T, data []byte) {
		raw, err := Parse("f.yaml", data, Options{})
		checkProblems(t, data, err)
		if raw != nil {
			l, verr := Validate(raw, fsys, Options{})
			checkProblems(t, data, verr)
			if (l == nil) == (verr == nil) {
				t.Fatalf("Validate returned lesson %v and error %v", l, verr)
			}
			if err != nil && verr == nil && hasError(err) {
				t.Fatalf("Parse found errors but Validate passed: %v", err)
			}
		}
		_, err = ParseImage("f.yaml", data, Options{Strict: true})
		checkProblems(t, data, err)
		_, err = ParseCollection("f.yaml", data, Options{})
		checkProblems(t, data, err)
		_, err = ParseCurriculumMeta("f.yaml", data, Options{})
		checkProblems(t, data, err)
		if m, err := Migrate("f.yaml", data); err != nil {
			checkProblems(t, data, err)
		} else if _, err := m.YAML(); err != nil {
			t.Fatalf("YAML of a migration: %v", err)
		}
	})
}

func hasError(err error) bool {
	for _, p := range ProblemsOf(err) {
		if p.Severity == SeverityError {
			return true
		}
	}
	return false
}

func checkProblems(t *testing.T, data []byte, err error) {
	t.Helper()
	if err == nil {
		return
	}
	probs := ProblemsOf(err)
	if len(probs) == 0 {
		t.Fatalf("error without problems: %v", err)
	}
	// An error at the end of the input may name the line after the last.
	lines := strictyaml.Lines(data) + 1
	for _, p := range probs {
		if p.Kind == nil || errors.Unwrap(p) == nil {
			t.Fatalf("problem without a category: %v", p)
		}
		if p.Pos.Line < 0 || p.Pos.Line > lines {
			t.Fatalf("problem at line %d of a %d-line input: %v", p.Pos.Line, lines, p)
		}
		if !strings.HasPrefix(p.Error(), "f.yaml") {
			t.Fatalf("problem text does not start with the file name: %q", p.Error())
		}
	}
}
