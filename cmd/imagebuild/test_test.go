package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
)

func TestImagebuildTest(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"test", "--accel", "tcg", im.Dir}, nil, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "ssh login as antidote ok") || !strings.Contains(out.String(), "(stopped)") {
		t.Errorf("output %q", out.String())
	}
	err = Run(context.Background(), []string{"test", t.TempDir()}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("empty dir: %v", err)
	}
}
