package lessonmeta

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	raw, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatalf("compile schema: %v\n%s", err, raw)
	}
	return s
}

// yamlInstance turns YAML into the JSON value a YAML-aware editor checks.
func yamlInstance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

func schemaAccepts(t *testing.T, s *jsonschema.Schema, file string) {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate(yamlInstance(t, data)); err != nil {
		t.Errorf("%s does not validate against the schema:\n%v", file, err)
	}
}

func TestSchemaAcceptsExampleLessons(t *testing.T) {
	s := compileSchema(t)
	files, _ := filepath.Glob(filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "*", LessonFile))
	if len(files) == 0 {
		t.Fatal("no example lessons")
	}
	for _, f := range files {
		schemaAccepts(t, s, f)
	}
}

func TestSchemaAcceptsCorpusLessons(t *testing.T) {
	s := compileSchema(t)
	for _, d := range corpusLessonDirs(t) {
		schemaAccepts(t, s, filepath.Join(d, LessonFile))
	}
}

func TestSchemaRejectsBadLessons(t *testing.T) {
	s := compileSchema(t)
	for name, edit := range map[string]func(string) string{
		"port too big":        replace("port: 22", "port: 70000"),
		"bad slug":            replace("slug: demo", "slug: Demo"),
		"unknown type":        replace("type: ssh", "type: vnc"),
		"missing stages":      replace("stages:\n  - description: One\n    guideType: markdown\n", ""),
		"bad endpoint name":   replace("name: r2", "name: R2"),
		"unknown key":         replace("tier: local", "tier: local\ntiers: x"),
		"subnet without mask": replace("subnet: 10.1.0.0/24", "subnet: 10.1.0.0"),
	} {
		if err := s.Validate(yamlInstance(t, []byte(edit(baseLesson)))); err == nil {
			t.Errorf("%s: schema accepted it", name)
		}
	}
	if err := s.Validate(yamlInstance(t, []byte(baseLesson))); err != nil {
		t.Errorf("base lesson rejected: %v", err)
	}
	raw, _ := Schema()
	for _, ext := range []string{`"netconf"`, `"ssh"`} {
		if !strings.Contains(string(raw), ext) {
			t.Errorf("schema lacks the extension configurationType %s", ext)
		}
	}
}

var update = flag.Bool("update", false, "rewrite docs/lesson.meta.schema.json from the Go types")

// TestSchemaFileUpToDate keeps the checked-in schema (what editors point
// at) equal to the generated one. Regenerate with
// `go test ./lessonmeta -run SchemaFile -update`.
func TestSchemaFileUpToDate(t *testing.T) {
	want, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, '\n')
	file := filepath.Join(ektest.RepoRoot(t), "docs", "lesson.meta.schema.json")
	if *update {
		if err := os.WriteFile(file, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is stale: run `go test ./lessonmeta -run SchemaFile -update`", file)
	}
}
