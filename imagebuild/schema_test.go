package imagebuild

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/invopop/jsonschema"
	sjs "github.com/santhosh-tekuri/jsonschema/v6"
	"gopkg.in/yaml.v3"
)

var update = flag.Bool("update", false, "rewrite golden files and the JSON Schema")

func generateSchema(t *testing.T) []byte {
	t.Helper()
	r := &jsonschema.Reflector{FieldNameTag: "yaml", ExpandedStruct: true,
		Mapper: func(t reflect.Type) *jsonschema.Schema {
			if t != reflect.TypeOf(APISwitch{}) {
				return nil
			}
			return &jsonschema.Schema{
				Description: "true (on, at the standard port), false (off) or a port number (on, at that port)",
				OneOf: []*jsonschema.Schema{{Type: "boolean"},
					{Type: "integer", Minimum: json.Number("1"), Maximum: json.Number("65535")}},
			}
		}}
	if err := r.AddGoComments("github.com/endpointkit/endpointkit/imagebuild", "./"); err != nil {
		t.Fatal(err)
	}
	s := r.Reflect(&Recipe{})
	s.ID = "https://github.com/endpointkit/endpointkit/imagebuild/image.schema.json"
	s.Title = "endpointkit image recipe (image.yaml)"
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	return append(raw, '\n')
}

// TestSchemaUpToDate keeps image.schema.json in step with the Recipe type.
func TestSchemaUpToDate(t *testing.T) {
	got := generateSchema(t)
	if *update {
		if err := os.WriteFile("image.schema.json", got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if !bytes.Equal(got, Schema()) {
		t.Fatal("image.schema.json is stale: run go test ./imagebuild -run Schema -update")
	}
}

// TestExamplesMatchSchema validates every example recipe against the
// schema, and checks the schema rejects an unknown key.
func TestExamplesMatchSchema(t *testing.T) {
	var doc any
	if err := json.Unmarshal(Schema(), &doc); err != nil {
		t.Fatal(err)
	}
	c := sjs.NewCompiler()
	if err := c.AddResource("file:///image.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("file:///image.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	paths, _ := filepath.Glob("../examples/images/*/image.yaml")
	if len(paths) == 0 {
		t.Fatal("no example recipes")
	}
	toJSON := func(raw []byte) any {
		var v any
		if err := yaml.Unmarshal(raw, &v); err != nil {
			t.Fatal(err)
		}
		j, _ := json.Marshal(v)
		var out any
		json.Unmarshal(j, &out)
		return out
	}
	for _, p := range paths {
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(toJSON(raw)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	if err := sch.Validate(toJSON([]byte("slug: x\nkind: initramfs\nbogus: 1\n"))); err == nil {
		t.Error("schema accepted an unknown key")
	}
}
