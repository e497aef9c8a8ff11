package lessonmeta

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the lesson.meta.yaml JSON Schema: where the copy
// kept in the repository (docs/lesson.meta.schema.json) is served.
const SchemaID = "https://raw.githubusercontent.com/endpointkit/endpointkit/main/docs/lesson.meta.schema.json"

// Schema returns a JSON Schema (draft 2020-12) for lesson.meta.yaml,
// generated from [RawLesson], for editors (yaml-language-server and the
// like). The Go validator stays the source of truth: the schema cannot
// express the cross-field rules (unique names, connection ends, files per
// stage), and it rejects unknown keys where the validator only warns.
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{
		FieldNameTag:               "yaml",
		RequiredFromJSONSchemaTags: true,
		Namer:                      func(t reflect.Type) string { return t.Name() },
	}
	s := r.Reflect(&RawLesson{})
	s.ID = SchemaID
	s.Title = "Antidote lesson.meta.yaml (with endpointkit extensions)"
	s.Description = "An NRE Labs / Antidote lesson (antidote-core v0.6/v0.7 format). configurationType netconf and ssh are endpointkit extensions."
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(s); err != nil {
		return nil, fmt.Errorf("lessonmeta: schema: %w", err)
	}
	return bytes.TrimRight(b.Bytes(), "\n"), nil
}
