package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/lessonjson"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

// run runs the command line and returns its stdout, stderr and exit status.
func run(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), ExitCode(err)
}

func example(t *testing.T) string {
	return filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "linux-triangle")
}

func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, _, code := run(t, args...)
		if code != 0 || !strings.Contains(out, "Commands:") {
			t.Errorf("%v: code %d, output:\n%s", args, code, out)
		}
		for _, c := range commands() {
			if !strings.Contains(out, "  "+c.Name+" ") {
				t.Errorf("%v: command %s not listed", args, c.Name)
			}
		}
	}
	for _, c := range commands() {
		for _, args := range [][]string{{c.Name, "--help"}, {c.Name, "-h"}, {"help", c.Name}} {
			out, _, code := run(t, args...)
			if code != 0 || !strings.HasPrefix(out, "Usage: lesson "+c.Name) {
				t.Errorf("%v: code %d, output:\n%s", args, code, out)
			}
		}
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{}, {"frobnicate"}, {"validate"}, {"validate", "--nope", "x"}, {"plan"}, {"migrate"}, {"migrate", "a", "b"}, {"schema", "x"}} {
		_, errOut, code := run(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: code %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
}

func TestValidateExample(t *testing.T) {
	out, errOut, code := run(t, "validate", example(t))
	if code != 0 || !strings.Contains(out, "ok, lesson linux-triangle (1 warnings)") {
		t.Fatalf("code %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	// The tiny image is built by imagebuild, not shipped as metadata here:
	// valid, with a warning at the first endpoint's image line.
	if !strings.Contains(errOut, "lesson.meta.yaml:25:12: warning: endpoints[0].image: image \"tiny\" (used by r1, r2, r3) has no image.meta.yaml") {
		t.Errorf("stderr:\n%s", errOut)
	}
	// With the image's metadata in an --images directory the warning goes.
	images := t.TempDir()
	os.MkdirAll(filepath.Join(images, "tiny"), 0o755)
	os.WriteFile(filepath.Join(images, "tiny", lessonmeta.ImageFile), []byte(
		"slug: tiny\nflavor: untrusted\nsshUser: antidote\nsshPassword: antidotepassword\nconfigUser: antidote\nconfigPassword: antidotepassword\n"), 0o644)
	out, errOut, code = run(t, "validate", "--images", images, example(t), "--strict")
	if code != 0 || errOut != "" || !strings.Contains(out, "(0 warnings)") {
		t.Fatalf("with --images: code %d\n%s%s", code, out, errOut)
	}
}

// TestValidateCorpusLessons: `lesson validate` exits 0 on every corpus
// lesson, and `lesson migrate` on every legacy file.
func TestValidateCorpusLessons(t *testing.T) {
	corpus := filepath.Join(ektest.SharedDir(t), "corpus")
	dirs, _ := filepath.Glob(filepath.Join(corpus, "lessons", "*"))
	if len(dirs) < 10 {
		t.Fatalf("only %d corpus lessons", len(dirs))
	}
	for _, d := range dirs {
		if out, errOut, code := run(t, "validate", d); code != 0 {
			t.Errorf("validate %s: exit %d\n%s%s", d, code, out, errOut)
		}
	}
	legacy, _ := filepath.Glob(filepath.Join(corpus, "legacy", "*"))
	if len(legacy) < 5 {
		t.Fatalf("only %d legacy lessons", len(legacy))
	}
	for _, d := range legacy {
		out, errOut, code := run(t, "migrate", d)
		if code != 0 {
			t.Errorf("migrate %s: exit %d\n%s", d, code, errOut)
			continue
		}
		if !strings.Contains(errOut, "format") || !strings.Contains(errOut, "mapped:") {
			t.Errorf("migrate %s: no report on stderr:\n%s", d, errOut)
		}
		raw, err := lessonmeta.Parse("migrated.yaml", []byte(out), lessonmeta.Options{Strict: true})
		if err == nil {
			_, err = lessonmeta.Validate(raw, nil, lessonmeta.Options{})
		}
		if err != nil {
			t.Errorf("migrate %s printed an invalid lesson: %v\n%s", d, err, out)
		}
	}
	// And the strict current-format validator rejects the legacy files.
	for _, d := range legacy {
		if _, errOut, code := run(t, "validate", d); code != 1 || !strings.Contains(errOut, "lesson migrate") {
			t.Errorf("validate %s: exit %d\n%s", d, code, errOut)
		}
	}
}

func TestValidateCurriculumJSON(t *testing.T) {
	corpus := filepath.Join(ektest.SharedDir(t), "corpus")
	out, _, code := run(t, "validate", "--json", corpus)
	if code != 1 {
		t.Errorf("exit %d, want 1 (stig's prerequisite is not in the corpus)", code)
	}
	var v lessonjson.Validation
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if v.Version != 1 || v.OK || len(v.Targets) != 1 || v.Targets[0].Kind != "curriculum" || v.Targets[0].Errors != 1 || len(v.Targets[0].Lessons) < 10 {
		t.Fatalf("output: %+v", v)
	}
	var found bool
	for _, p := range v.Targets[0].Problems {
		if p.Severity == "error" && p.Code == "reference" && p.Field == "prereqs[0]" && p.Line == 8 {
			found = true
		}
	}
	if !found {
		t.Errorf("stig's prerequisite error not in %+v", v.Targets[0].Problems)
	}
}

func writeLesson(t *testing.T, meta string, files ...string) string {
	t.Helper()
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, lessonmeta.LessonFile), []byte(meta), 0o644)
	for _, f := range files {
		os.MkdirAll(filepath.Join(dir, filepath.Dir(f)), 0o755)
		os.WriteFile(filepath.Join(dir, f), []byte("x\n"), 0o644)
	}
	return dir
}

const badLesson = `name: Bad
slug: bad
category: tools
tier: local
description: d
shortDescription: s
endpoints:
  - name: r1
    image: utility
    configurationType: python
    presentations: [{name: cli, port: 22, type: ssh}]
    colour: blue
stages: [{guideType: markdown}]
`

func TestValidateBadLesson(t *testing.T) {
	dir := writeLesson(t, badLesson, "stage0/guide.md")
	out, errOut, code := run(t, "validate", dir)
	if code != 1 || !strings.Contains(out, "invalid (1 errors, 2 warnings)") {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	file := filepath.Join(dir, lessonmeta.LessonFile)
	for _, want := range []string{
		file + ":10:24: endpoints[0].configurationType: python configuration of \"r1\" needs stage0/configs/r1.py for stage 0",
		file + ":12:5: warning: endpoints[0].colour: unknown key",
		file + ":9:12: warning: endpoints[0].image: image \"utility\" (used by r1) has no image.meta.yaml (searched: nowhere, no image directories given)",
	} {
		if !strings.Contains(errOut, want) {
			t.Errorf("stderr lacks %q:\n%s", want, errOut)
		}
	}
	// --strict turns the unknown key into an error; --json reports both.
	out, _, code = run(t, "validate", "--strict", "--json", dir)
	var v lessonjson.Validation
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 1 {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	if tg := v.Targets[0]; tg.Errors != 2 || tg.Warnings != 1 || tg.Problems[2].Code != "unknown-key" || tg.Problems[2].Line != 12 || tg.Problems[2].Severity != "error" {
		t.Errorf("strict JSON target: %+v", tg)
	}
	// Not a lesson at all.
	_, errOut, code = run(t, "validate", t.TempDir())
	if code != 1 || !strings.Contains(errOut, "neither a lesson") {
		t.Errorf("empty dir: exit %d\n%s", code, errOut)
	}
}

func TestPlan(t *testing.T) {
	out, errOut, code := run(t, "plan", example(t))
	if code != 0 {
		t.Fatalf("exit %d\n%s", code, errOut)
	}
	for _, want := range []string{
		"lesson linux-triangle: 3 endpoints, 3 links, 2 stages",
		"10.12.0.2/24  r2 eth1",
		"1     r2.eth2  r3.eth1  10.23.0.0/24  1500",
		"1      r3        ssh     stage1/configs/r3.sh",
		`warning: image "tiny" has no image.meta.yaml`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	out, _, code = run(t, "plan", "--json", "--mtu", "9000", example(t))
	var v lessonjson.Plans
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
	p := v.Plans[0]
	if v.Version != 1 || p.Lesson != "linux-triangle" || p.Stages != 2 || len(p.Endpoints) != 3 || len(p.Links) != 3 || len(p.Warnings) != 1 {
		t.Fatalf("plan JSON: %+v", v)
	}
	r3 := p.Endpoints[2]
	if r3.Name != "r3" || r3.ImageKnown || r3.Interfaces[1].Address != "10.13.0.3/24" || r3.Interfaces[1].MTU != 9000 ||
		r3.Stages[1].File != filepath.Join(example(t), "stage1", "configs", "r3.sh") || len(r3.ManagementMAC) != 17 {
		t.Errorf("r3: %+v", r3)
	}
	// A broken lesson fails the plan with its problems.
	_, errOut, code = run(t, "plan", writeLesson(t, badLesson, "stage0/guide.md"))
	if code != 1 || !strings.Contains(errOut, "needs stage0/configs/r1.py") {
		t.Errorf("bad lesson plan: exit %d\n%s", code, errOut)
	}
}

func TestMigrateCurrentAndBroken(t *testing.T) {
	out, errOut, code := run(t, "migrate", example(t))
	if code != 0 || !strings.Contains(out, "slug: linux-triangle") || !strings.Contains(errOut, "already in the current format") {
		t.Errorf("exit %d\n%s%s", code, out, errOut)
	}
	dir := writeLesson(t, "lessonName: x\nlessonID: [1\n")
	_, errOut, code = run(t, "migrate", dir)
	if code != 1 || !strings.Contains(errOut, "not valid YAML") {
		t.Errorf("broken: exit %d\n%s", code, errOut)
	}
}

func TestSchemaCommand(t *testing.T) {
	out, _, code := run(t, "schema")
	var v map[string]any
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 0 || v["$schema"] == nil {
		t.Fatalf("exit %d, %v", code, err)
	}
}

func TestParseInterspersed(t *testing.T) {
	out, _, code := run(t, "validate", example(t), "--json", "--", "--strict")
	// "--strict" after "--" is a path, which does not exist.
	var v lessonjson.Validation
	if err := json.Unmarshal([]byte(out), &v); err != nil || code != 1 || len(v.Targets) != 2 || v.Targets[1].Path != "--strict" {
		t.Fatalf("exit %d, %v\n%s", code, err, out)
	}
}
