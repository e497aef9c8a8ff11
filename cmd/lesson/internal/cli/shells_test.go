package cli

import (
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

var builtBin struct {
	once sync.Once
	dir  string
	err  error
	out  []byte
}

// binDir builds lesson and endpoint side by side (lesson finds the
// launcher beside itself), once per test binary.
func binDir(t *testing.T) string {
	t.Helper()
	ektest.RequireTool(t, "go")
	b := &builtBin
	b.once.Do(func() {
		if b.dir, b.err = os.MkdirTemp("", "lesson-bin"); b.err != nil {
			return
		}
		for name, pkg := range map[string]string{"lesson": "../..", "endpoint": "../../../endpoint"} {
			if b.out, b.err = exec.Command("go", "build", "-o", filepath.Join(b.dir, name), pkg).CombinedOutput(); b.err != nil {
				return
			}
		}
	})
	if b.err != nil {
		t.Fatalf("go build: %v\n%s", b.err, b.out)
	}
	return b.dir
}

func TestMain(m *testing.M) {
	code := m.Run()
	if builtBin.dir != "" {
		os.RemoveAll(builtBin.dir)
	}
	os.Exit(code)
}

// shell runs script in a shell with the built lesson first on PATH and
// returns its output lines.
func shell(t *testing.T, bin string, argv ...string) []string {
	t.Helper()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), "PATH="+bin+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", argv[0], err, out)
	}
	return strings.Fields(string(out))
}

func completionFile(t *testing.T, bin, sh string) string {
	t.Helper()
	out, err := exec.Command(filepath.Join(bin, "lesson"), "completion", sh).Output()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "lesson."+sh)
	if err := os.WriteFile(p, out, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// BashCompgen completes `lesson ssh --state-root ROOT <Tab>` in bash the
// way bash does: the script's function fills COMPREPLY with compgen.
func bashCompgen(t *testing.T, bin, root, prefix string) []string {
	t.Helper()
	ektest.RequireTool(t, "bash")
	script := completionFile(t, bin, "bash")
	shell(t, bin, "bash", "-n", script)
	return shell(t, bin, "bash", "-c", `source "$1" && complete -p lesson >/dev/null &&
		COMP_WORDS=(lesson ssh --state-root "$2" "$3") COMP_CWORD=4 && _lesson && printf '%s\n' "${COMPREPLY[@]}"`,
		"bash", script, root, prefix)
}

// The completion scripts load in bash, zsh and fish and complete the
// endpoints of the running instance through the real binary.
func TestCompletionShells(t *testing.T) {
	bin := binDir(t)
	root := t.TempDir()
	fakeInstance(t, root, "tri", example(t), "r1", "r2", "r3")
	want := []string{"r1", "r2", "r3"}

	if got := bashCompgen(t, bin, root, ""); !slices.Equal(got, want) {
		t.Errorf("bash: %q, want %q", got, want)
	}
	if got := bashCompgen(t, bin, root, "r2"); !slices.Equal(got, []string{"r2"}) {
		t.Errorf("bash r2<Tab>: %q", got)
	}

	ektest.RequireTool(t, "zsh", "fish")
	zsh := completionFile(t, bin, "zsh")
	shell(t, bin, "zsh", "-n", zsh)
	// compadd and _files exist only inside zsh's completion system: stand-ins print what they get.
	got := shell(t, bin, "zsh", "-c", `compadd() { [[ $1 == -a ]] && print -l -- ${(P)2} }; _files() { print FILES }
		source "$1"; words=(lesson logs --state-root "$2" ""); CURRENT=5; _lesson
		words=(lesson up ""); CURRENT=3; _lesson`, "zsh", zsh, root)
	if !slices.Equal(got, append(want, "FILES")) {
		t.Errorf("zsh: %q, want %q then FILES", got, want)
	}

	fish := completionFile(t, bin, "fish")
	shell(t, bin, "fish", "--no-execute", fish)
	got = shell(t, bin, "fish", "-c", `source $argv[1]; complete -C "lesson console --state-root $argv[2] "`, fish, root)
	if !slices.Equal(got, want) {
		t.Errorf("fish: %q, want %q", got, want)
	}
	got = shell(t, bin, "fish", "-c", `source $argv[1]; complete -C "lesson sta"`, fish)
	if !slices.Equal(got, []string{"status"}) {
		t.Errorf("fish lesson sta<Tab>: %q", got)
	}
}
