package kuberun_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
)

// LessonFiles reads a lesson directory for its ConfigMap: regular files
// in path order with their modes, a link inside the lesson as a copy of
// its file, empty directories left out; too much is ErrLessonTooLarge.
func TestLessonFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(rel string, data string, mode os.FileMode) {
		t.Helper()
		p := filepath.Join(dir, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), mode); err != nil {
			t.Fatal(err)
		}
	}
	write("lesson.meta.yaml", "slug: x\n", 0o644)
	write("stage0/configs/r1.sh", "#!/bin/sh\n", 0o755)
	if err := os.Symlink("configs/r1.sh", filepath.Join(dir, "stage0", "link.sh")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(dir, "empty"), 0o755); err != nil {
		t.Fatal(err)
	}
	files, err := kuberun.LessonFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, f := range files {
		got = append(got, fmt.Sprintf("%s %o %q", f.Path, f.Mode, f.Data))
	}
	want := []string{`lesson.meta.yaml 644 "slug: x\n"`, `stage0/configs/r1.sh 755 "#!/bin/sh\n"`, `stage0/link.sh 755 "#!/bin/sh\n"`}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("files:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	write("stage1/big.bin", strings.Repeat("x", kubeplan.MaxLessonFiles), 0o644)
	if _, err := kuberun.LessonFiles(dir); !errors.Is(err, kuberun.ErrLessonTooLarge) || !strings.Contains(err.Error(), dir) {
		t.Errorf("a lesson over the ConfigMap's size: err = %v, want ErrLessonTooLarge naming %s", err, dir)
	}
	if _, err := kuberun.LessonFiles(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing directory read")
	}
}
