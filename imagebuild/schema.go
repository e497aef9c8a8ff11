package imagebuild

import (
	_ "embed"
)

// schemaJSON is the JSON Schema of image.yaml, generated from [Recipe] by
// the test TestSchemaUpToDate (go test ./imagebuild -run Schema -update).
//
//go:embed image.schema.json
var schemaJSON []byte

// Schema returns the JSON Schema (draft 2020-12) of image.yaml for editors
// and other tools. The Go decoder ([ParseRecipe], [Recipe.Resolve]) is the
// authority; the schema checks shape, not file existence.
func Schema() []byte {
	return append([]byte(nil), schemaJSON...)
}
