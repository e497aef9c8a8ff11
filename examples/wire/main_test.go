package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

func TestWire(t *testing.T) {
	ektest.RequireRoot(t)
	ektest.RequireTool(t, "ping")
	name := ektest.Name("ekt")
	var out bytes.Buffer
	if err := run(context.Background(), name, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	for _, want := range []string{"a lives in namespace ek-" + name + ".a", "2 received"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	ektest.AssertClean(t, "ek-"+name)
}
