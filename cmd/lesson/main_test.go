package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// TestBinary builds the real command and checks its exit statuses: the
// process boundary is main's only job.
func TestBinary(t *testing.T) {
	ektest.RequireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "lesson")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	example := filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "linux-triangle")
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{[]string{"validate", example}, 0, "ok, lesson linux-triangle"},
		{[]string{"plan", example}, 0, "10.13.0.3/24"},
		{[]string{"validate", t.TempDir()}, 1, "neither a lesson"},
		{[]string{"validate"}, 2, "give at least one PATH"},
		{nil, 2, "Commands:"},
		{[]string{"--help"}, 0, "Commands:"},
	} {
		out, err := exec.Command(bin, tc.args...).CombinedOutput()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		if code != tc.code || !strings.Contains(string(out), tc.out) {
			t.Errorf("lesson %v: exit %d (want %d), output:\n%s", tc.args, code, tc.code, out)
		}
	}
}
