package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

func TestImagebuildTest(t *testing.T) {
	ektest.RequireQEMU(t)
	im := imagetest.Tiny(t)
	var out, errb bytes.Buffer
	err := Run(context.Background(), []string{"test", "--accel", "tcg", im.Dir}, nil, &out, &errb)
	if err != nil {
		t.Fatalf("%v\n%s", err, errb.String())
	}
	if !strings.Contains(out.String(), "ssh login as antidote ok, 1 self-test(s) passed") || !strings.Contains(out.String(), "(stopped)") ||
		!strings.Contains(out.String(), `self-test "antidote logs in and has sudo" passed`) {
		t.Errorf("output %q", out.String())
	}
	err = Run(context.Background(), []string{"test", t.TempDir()}, nil, &out, &errb)
	if err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("empty dir: %v", err)
	}
}

// TestImagebuildTestSelfTestFails: a self-test that exits non-zero fails
// `imagebuild test` with the test's name, exit code and output, and the
// tests before it are reported as passed.
func TestImagebuildTestSelfTestFails(t *testing.T) {
	ektest.RequireQEMU(t)
	raw, err := os.ReadFile(filepath.Join(ektest.RepoRoot(t), "examples", "images", "tiny", "image.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	recipe := strings.Replace(string(raw), "tests:\n", "tests:\n  - name: fails on purpose\n    run: echo boom from $(id -un); exit 3\n", 1)
	recipe = strings.Replace(recipe, "slug: tiny", "slug: tiny-failing", 1)
	if err := os.WriteFile(filepath.Join(dir, "image.yaml"), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	im := imagetest.Build(t, dir)
	var out, errb bytes.Buffer
	err = Run(context.Background(), []string{"test", "--accel", "tcg", im.Dir}, nil, &out, &errb)
	var st *qemulaunch.SelfTestError
	if !errors.As(err, &st) || st.Name != "fails on purpose" || st.ExitCode != 3 || !strings.Contains(st.Output, "boom from antidote") {
		t.Fatalf("imagebuild test = %v (%#v); want the failing self-test with exit 3 and its output", err, st)
	}
	if msg := err.Error(); !strings.Contains(msg, `self-test "fails on purpose" exited 3`) || !strings.Contains(msg, "boom from antidote") {
		t.Errorf("error text %q", msg)
	}
}
