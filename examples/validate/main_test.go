package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

func TestValidate(t *testing.T) {
	var out bytes.Buffer
	good := filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "linux-triangle")
	if err := run([]string{good}, &out); err != nil || !strings.Contains(out.String(), "lesson linux-triangle is valid: 3 endpoints") {
		t.Fatalf("run(linux-triangle): %v\n%s", err, out.String())
	}
	bad := t.TempDir()
	os.WriteFile(filepath.Join(bad, "lesson.meta.yaml"), []byte("name: x\nslug: Not_A_Slug\n"), 0o644)
	out.Reset()
	err := run([]string{bad}, &out)
	if err == nil || !strings.Contains(out.String(), "lesson.meta.yaml:2:7: slug:") {
		t.Errorf("run(bad): %v\n%s", err, out.String())
	}
}
