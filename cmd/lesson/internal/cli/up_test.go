package cli

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/lessonjson"
)

func TestInstanceUsageErrors(t *testing.T) {
	root := t.TempDir()
	for _, args := range [][]string{
		{"up"}, {"up", "a", "b"}, {"configure", "--state-root", root}, {"configure", "--stage", "1", "a", "b"},
		{"console", "--state-root", root}, {"ssh", "--state-root", root}, {"status", "extra"}, {"down", "a", "b"}, {"restart"},
		{"link"}, {"link", "frob"}, {"link", "add", "a"}, {"link", "add", "a", "b", "c"}, {"link", "del", "a"},
		{"link", "del", "a:eth1", "b:eth1"}, {"link", "add", "a", "b", "--subnet", "10.1.2.300/24"},
		{"link", "del", "a:eth1", "--subnet", "10.1.2.0/24"},
	} {
		_, errOut, code := run(t, args...)
		if code != 2 || errOut == "" {
			t.Errorf("%v: code %d, stderr %q; want 2 and a message", args, code, errOut)
		}
	}
	// Nothing running: status says so; console and ssh say how to start.
	out, _, code := run(t, "status", "--state-root", root)
	if code != 0 || !strings.Contains(out, "no lesson instance") {
		t.Errorf("status with nothing running: code %d, %q", code, out)
	}
	_, errOut, code := run(t, "ssh", "--state-root", root, "r1")
	if code != 1 || !strings.Contains(errOut, "lesson up DIR") {
		t.Errorf("ssh with nothing running: code %d, %q", code, errOut)
	}
	// Two instances: the choice is the user's.
	for _, n := range []string{"one", "two"} {
		os.MkdirAll(filepath.Join(root, n), 0o755)
		os.WriteFile(filepath.Join(root, n, endpointkit.StateFile), []byte(`{"version":1,"instance":"`+n+`"}`), 0o600)
	}
	_, errOut, code = run(t, "console", "--state-root", root, "r1")
	if code != 2 || !strings.Contains(errOut, "one, two") || !strings.Contains(errOut, "--instance") {
		t.Errorf("console with two instances: code %d, %q", code, errOut)
	}
}

// TestUpCommand drives the lesson commands end to end on a two-endpoint
// lesson: up (with the link check), status --json, configure, ssh with a
// command, down.
func TestUpCommand(t *testing.T) {
	ektest.RequireRoot(t)
	ektest.RequireQEMU(t)
	ektest.RequireTool(t, "go")
	tmp := t.TempDir()
	launcher := filepath.Join(tmp, "endpoint")
	if out, err := exec.Command("go", "build", "-o", launcher, "../../../endpoint").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	images := filepath.Join(tmp, "images")
	os.MkdirAll(images, 0o755)
	if err := os.Symlink(imagetest.Tiny(t).Dir, filepath.Join(images, "tiny")); err != nil {
		t.Fatal(err)
	}
	root, err := os.MkdirTemp("/run", "ekt")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(root)
	name := ektest.Name("ekt")
	lesson := filepath.Join(ektest.RepoRoot(t), "testdata", "lessons", "pair")
	common := []string{"--state-root", root, "--instance", name}
	defer run(t, append([]string{"down"}, common...)...)

	out, errOut, code := run(t, append([]string{"up", lesson, "--launcher", launcher, "--images", images, "--accel", "tcg", "--check"}, common...)...)
	if code != 0 {
		t.Fatalf("up: code %d\n%s\n%s", code, out, errOut)
	}
	for _, want := range []string{"configured (stage 0)", "a eth1 → b 10.9.0.3  ok", "b eth1 → a 10.9.0.2  ok", "UserKnownHostsFile=" + root + "/" + name + "/known_hosts -o StrictHostKeyChecking=yes antidote@"} {
		if !strings.Contains(out, want) {
			t.Errorf("up output lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(errOut, "step=ready") {
		t.Errorf("up: no structured progress on a non-terminal stderr:\n%s", errOut)
	}

	out, _, code = run(t, append([]string{"status", "--json"}, common...)...)
	var st lessonjson.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 || len(st.Instances) != 1 || len(st.Instances[0].Endpoints) != 2 {
		t.Fatalf("status --json: code %d, %v:\n%s", code, err, out)
	}

	out, errOut, code = run(t, append([]string{"configure", "--stage", "0", lesson}, common...)...)
	if code != 0 || strings.Count(out, "configured (stage 0)") != 2 {
		t.Errorf("configure: code %d\n%s\n%s", code, out, errOut)
	}
	// A link added while it runs, shown by status, then removed.
	out, errOut, code = run(t, append([]string{"link", "add", "a", "b", "--subnet", "10.10.0.0/24"}, common...)...)
	if code != 0 || !strings.Contains(out, "a: eth2 (guest eth2, PCI 04.0, MAC ") || !strings.Contains(out, ") 10.10.0.2/24\n") ||
		!strings.Contains(out, "b: eth2 (guest eth2, PCI 04.0, MAC ") || !strings.Contains(out, ") 10.10.0.3/24\n") {
		t.Errorf("link add: code %d\n%s\n%s", code, out, errOut)
	}
	out, _, _ = run(t, append([]string{"status"}, common...)...)
	if !strings.Contains(out, "link added:   a:eth2 ↔ b:eth2 (10.10.0.0/24); guest eth2 on a, eth2 on b") {
		t.Errorf("status does not show the added link:\n%s", out)
	}
	out, _, code = run(t, append(append([]string{"ssh"}, common...), "a", "--", "ping -c 1 -W 5 10.10.0.3 >/dev/null && echo pong")...)
	if code != 0 || strings.TrimSpace(out) != "pong" {
		t.Errorf("a → b across the added link: code %d, %q", code, out)
	}
	if _, errOut, code = run(t, append([]string{"link", "del", "a:eth9"}, common...)...); code != 1 || !strings.Contains(errOut, "not a link") {
		t.Errorf("link del a:eth9: code %d, %q", code, errOut)
	}
	out, errOut, code = run(t, append([]string{"link", "del", "b:eth2", "--json"}, common...)...)
	var lc lessonjson.LinkChange
	if err := json.Unmarshal([]byte(out), &lc); err != nil || code != 0 || len(lc.Removed) != 2 || lc.Removed[0].String() != "a:eth2" {
		t.Errorf("link del --json: code %d, %v\n%s\n%s", code, err, out, errOut)
	}

	out, _, code = run(t, append(append([]string{"ssh"}, common...), "b", "--", "hostname")...)
	if code != 0 || strings.TrimSpace(out) != "b" {
		t.Errorf("ssh b -- hostname: code %d, %q", code, out)
	}
	if _, _, code = run(t, append(append([]string{"ssh"}, common...), "b", "--", "exit 3")...); code != 1 {
		t.Errorf("ssh b -- exit 3: code %d, want 1", code)
	}

	out, errOut, code = run(t, append(append([]string{"restart"}, common...), "a")...)
	if code != 0 || strings.Count(out, "configured (stage 0)") != 2 || !strings.Contains(out, "1 (last: restart requested)") {
		t.Errorf("restart a: code %d\n%s\n%s", code, out, errOut)
	}

	// down DIR, as up DIR: the instance started from DIR.
	out, _, code = run(t, "down", "--state-root", root, lesson)
	if code != 0 || !strings.Contains(out, "removed") {
		t.Errorf("down DIR: code %d, %q", code, out)
	}
	if _, err := os.Stat(filepath.Join(root, name)); err == nil {
		t.Errorf("state dir left after down")
	}
	ektest.AssertClean(t, "ek-"+name, "qemu-system", root+"/"+name+"/")
}

// TestPythonFlag: up and configure take --python, which picks the python
// method's interpreter.
func TestPythonFlag(t *testing.T) {
	for _, cmd := range []string{"up", "configure"} {
		out, errOut, _ := run(t, cmd, "--help")
		if !strings.Contains(out+errOut, "-python PATH") || !strings.Contains(out+errOut, configure.PythonEnv) {
			t.Errorf("%s --help lacks --python:\n%s%s", cmd, out, errOut)
		}
	}
	env := &Env{Stdout: io.Discard, Stderr: io.Discard}
	opts := (&instanceFlags{python: "/opt/py/bin/python3"}).options(env)
	if py, ok := opts.Configurators[endpoint.MethodPython].(*configure.Python); !ok || py.Interpreter != "/opt/py/bin/python3" {
		t.Errorf("--python /opt/py/bin/python3 gave configurators %v", opts.Configurators)
	}
	if opts := (&instanceFlags{}).options(env); opts.Configurators != nil {
		t.Errorf("without --python: configurators %v; want the defaults", opts.Configurators)
	}
}
