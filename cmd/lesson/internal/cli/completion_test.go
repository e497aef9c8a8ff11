package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/vmimage"
)

// fakeInstance writes the record of an instance (nothing runs) and a
// manifest of its image: enough for completion, which reads names and the
// lesson's links only.
func fakeInstance(t *testing.T, root, name, lessonDir string, endpoints ...string) {
	t.Helper()
	inst := endpointkit.Instance{Version: 1, Name: name, Lesson: "linux-triangle", LessonDir: lessonDir}
	imageDir := filepath.Join(root, name, "image")
	os.MkdirAll(imageDir, 0o755)
	if err := vmimage.Write(imageDir, vmimage.Manifest{Slug: "tiny"}); err != nil {
		t.Fatal(err)
	}
	for _, e := range endpoints {
		inst.Endpoints = append(inst.Endpoints, endpointkit.RunningEndpoint{Name: e, Image: "tiny", ImageDir: imageDir})
	}
	raw, err := json.Marshal(&inst)
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Join(root, name), 0o755)
	if err := os.WriteFile(filepath.Join(root, name, endpointkit.StateFile), raw, 0o600); err != nil {
		t.Fatal(err)
	}
}

func completions(t *testing.T, words ...string) []string {
	t.Helper()
	out, errOut, code := run(t, append([]string{completeVerb}, words...)...)
	if code != 0 || errOut != "" {
		t.Fatalf("__complete %q: code %d, stderr %q", words, code, errOut)
	}
	return strings.Fields(out)
}

func TestComplete(t *testing.T) {
	root := t.TempDir()
	fakeInstance(t, root, "tri", example(t), "r1", "r2", "r3")
	sr := []string{"--state-root", root}
	for _, tc := range []struct {
		words []string
		want  []string
	}{
		{[]string{""}, []string{"validate", "plan", "render", "migrate", "schema", "up", "status", "configure", "console", "ssh", "link", "logs", "restart", "down", "completion", "help"}},
		{append(append([]string{"link"}, sr...), ""), []string{"add", "del"}},
		{append(append([]string{"link"}, sr...), "add", ""), []string{"r1", "r2", "r3"}},
		{append(append([]string{"link"}, sr...), "add", "r1", "r"), []string{"r1", "r2", "r3"}},
		{append(append([]string{"link"}, sr...), "add", "r1", "r2", ""), nil},
		{append(append([]string{"link"}, sr...), "del", "r1"), []string{"r1:eth1", "r1:eth2"}},
		{append(append([]string{"link"}, sr...), "add", "r1", "r2", "--subnet", ""), nil},
		{[]string{"s"}, []string{"schema", "status", "ssh"}},
		{[]string{"help", "co"}, []string{"configure", "console", "completion"}},
		{append(append([]string{"ssh"}, sr...), ""), []string{"r1", "r2", "r3"}},
		{append(append([]string{"console"}, sr...), "r"), []string{"r1", "r2", "r3"}},
		{append(append([]string{"logs", "--follow"}, sr...), "r2"), []string{"r2"}},
		{append(append([]string{"logs"}, sr...), "r1", ""), nil},
		{append(append([]string{"ssh"}, sr...), "r1", "--", ""), nil},
		{append(append([]string{"ssh"}, sr...), "--instance", ""), []string{"tri"}},
		{append(append([]string{"ssh"}, sr...), "--instance", "nope", ""), nil},
		{append(append([]string{"logs"}, sr...), "--l"), []string{"--launcher", "--lines"}},
		{append(append([]string{"configure"}, sr...), "--stage", ""), []string{"0", "1"}},
		{[]string{"up", example(t), "--stage", ""}, []string{"0", "1"}},
		{[]string{"up", "--log-format", ""}, []string{"auto", "json", "text"}},
		{[]string{"up", "--accel=", "x", "--check", ""}, nil},
		{[]string{"completion", ""}, []string{"bash", "fish", "zsh"}},
		{[]string{"frobnicate", ""}, nil},
	} {
		got := completions(t, tc.words...)
		if !slices.Equal(got, tc.want) {
			t.Errorf("complete %q = %q, want %q", tc.words, got, tc.want)
		}
	}
	// Flags of a command come from its own flag set.
	flags := completions(t, "logs", "-")
	for _, f := range []string{"--follow", "-f", "--launcher", "--lines", "--instance", "--state-root"} {
		if !slices.Contains(flags, f) {
			t.Errorf("logs flags %q lack %s", flags, f)
		}
	}
	// Two instances: endpoints only with --instance.
	fakeInstance(t, root, "other", example(t), "x1")
	if got := completions(t, append(append([]string{"ssh"}, sr...), "")...); len(got) != 0 {
		t.Errorf("two instances, no --instance: %q", got)
	}
	if got := completions(t, append(append([]string{"ssh"}, sr...), "--instance", "other", "")...); !slices.Equal(got, []string{"x1"}) {
		t.Errorf("--instance other: %q", got)
	}
}

func TestCompletionScripts(t *testing.T) {
	for _, sh := range []string{"bash", "zsh", "fish"} {
		out, _, code := run(t, "completion", sh)
		if code != 0 || !strings.Contains(out, completeVerb) {
			t.Errorf("completion %s: code %d:\n%s", sh, code, out)
		}
	}
	for _, args := range [][]string{{"completion"}, {"completion", "tcsh"}} {
		if _, errOut, code := run(t, args...); code != 2 || !strings.Contains(errOut, "bash, zsh or fish") {
			t.Errorf("%v: code %d, %q", args, code, errOut)
		}
	}
}

// Completing never fails, whatever was typed.
func FuzzComplete(f *testing.F) {
	f.Add("ssh\x00--instance\x00")
	f.Add("logs\x00--lines=\x00-f\x00--\x00x")
	f.Add("up\x00--stage\x00")
	root := f.TempDir()
	f.Fuzz(func(t *testing.T, line string) {
		words := strings.Split(line, "\x00")
		words = append([]string{words[0], "--state-root", root}, words[1:]...)
		_, errOut, code := run(t, append([]string{completeVerb}, words...)...)
		if code != 0 || errOut != "" {
			t.Fatalf("__complete %q: code %d, %q", words, code, errOut)
		}
	})
}
