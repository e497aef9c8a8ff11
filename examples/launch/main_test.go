package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
)

func TestLaunch(t *testing.T) {
	ektest.RequireQEMU(t)
	t.Setenv("ENDPOINTKIT_ACCEL", "tcg")
	im := imagetest.Tiny(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	var out bytes.Buffer
	if err := run(ctx, im.Dir, &out); err != nil {
		t.Fatalf("run: %v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "ready in") || !strings.Contains(out.String(), "tiny: Linux example ") {
		t.Errorf("output:\n%s", out.String())
	}
	ektest.AssertClean(t, "ekt-none", "qemu-system", "-name example")
}
