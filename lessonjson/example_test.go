package lessonjson_test

import (
	"encoding/json"
	"fmt"

	"github.com/endpointkit/endpointkit/lessonjson"
)

// A program reads `lesson validate --json` with the command's own types.
func ExampleValidation() {
	out := []byte(`{"version":1,"ok":false,"targets":[{"path":"l","kind":"lesson","ok":false,"lessons":[],"errors":1,"warnings":0,
	  "problems":[{"file":"l/lesson.meta.yaml","line":3,"column":7,"field":"slug","severity":"error","code":"invalid","message":"bad slug"}]}]}`)
	var v lessonjson.Validation
	if err := json.Unmarshal(out, &v); err != nil {
		fmt.Println(err)
		return
	}
	for _, p := range v.Targets[0].Problems {
		fmt.Println(p)
	}
	// Output:
	// l/lesson.meta.yaml:3:7: slug: bad slug
}
