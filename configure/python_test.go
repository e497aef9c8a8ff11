package configure

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
)

const pyEnv = `import os, helper
out = os.environ["OUT"]
with open(out, "w") as f:
    for k in ("ANTIDOTE_TARGET_HOST", "ANTIDOTE_TARGET_PORT", "ANTIDOTE_TARGET_USERNAME", "ANTIDOTE_TARGET_PASSWORD", "SYRINGE_TARGET_HOST"):
        f.write(k + "=" + os.environ[k] + "\n")
    f.write("cwd=" + os.getcwd() + "\n")
    f.write("helper=" + helper.NAME + "\n")
print("configured", os.environ["ANTIDOTE_TARGET_HOST"])
`

func TestPythonScript(t *testing.T) {
	ektest.RequireTool(t, "python3")
	l := newLesson(t)
	out := filepath.Join(t.TempDir(), "env.txt")
	t.Setenv("OUT", out)
	l.config(0, "helper.py", "NAME = 'from-helper'\n")
	file := l.config(0, "vqfx1.py", pyEnv)
	tg := Target{Name: "vqfx1", Address: "10.9.8.7", Port: 2222, User: "antidote", Password: "antidotepassword",
		HostKeys: HostKeyPolicy{InsecureIgnore: true}} // nothing connects here
	rep, err := (&Python{}).Configure(ctxT(t, 30*time.Second), tg, endpoint.StageConfig{Method: endpoint.MethodPython, File: file})
	if err != nil {
		t.Fatalf("Configure: %v\n%s", err, rep.Output)
	}
	raw, _ := os.ReadFile(out)
	for _, want := range []string{"ANTIDOTE_TARGET_HOST=10.9.8.7", "ANTIDOTE_TARGET_PORT=2222", "ANTIDOTE_TARGET_USERNAME=antidote",
		"ANTIDOTE_TARGET_PASSWORD=antidotepassword", "SYRINGE_TARGET_HOST=10.9.8.7", "cwd=" + filepath.Dir(file), "helper=from-helper"} {
		if !strings.Contains(string(raw), want+"\n") {
			t.Errorf("script saw no %s:\n%s", want, raw)
		}
	}
	if strings.TrimSpace(rep.Output) != "configured 10.9.8.7" || len(rep.Steps) != 1 || !rep.Steps[0].OK {
		t.Errorf("report = %+v", rep)
	}

	bad := l.config(0, "vqfx2.py", "import sys\nprint('half done')\nsys.exit(3)\n")
	_, err = (&Python{}).Configure(ctxT(t, 30*time.Second), tg, endpoint.StageConfig{Method: endpoint.MethodPython, File: bad})
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Status != 3 || ee.Command != bad || !strings.Contains(ee.Output, "half done") {
		t.Fatalf("exit 3: err = %#v", err)
	}

	slow := l.config(0, "vqfx3.py", "import time, subprocess\nsubprocess.Popen(['sleep', '300'])\ntime.sleep(300)\n")
	start := time.Now()
	_, err = (&Python{}).Configure(ctxT(t, time.Second), tg, endpoint.StageConfig{Method: endpoint.MethodPython, File: slow})
	if err == nil || time.Since(start) > 5*time.Second {
		t.Fatalf("timeout: err = %v after %s", err, time.Since(start))
	}
	time.Sleep(100 * time.Millisecond)
	ektest.AssertClean(t, "ekt-none", filepath.Base(slow))
}

// TestPythonInterpreter: the interpreter is Python.Interpreter, else
// $ENDPOINTKIT_PYTHON, else the first python3 on PATH, and the report
// names the one that ran.
func TestPythonInterpreter(t *testing.T) {
	py := ektest.DebianPython(t, "yaml")
	l := newLesson(t)
	file := l.config(0, "r1.py", "import sys, yaml\nprint(sys.executable)\n")
	tg := Target{Name: "r1", Address: "10.9.8.7", User: "antidote", Password: "antidotepassword"}
	sc := endpoint.StageConfig{Method: endpoint.MethodPython, File: file}

	t.Setenv(PythonEnv, py)
	rep, err := (&Python{}).Configure(ctxT(t, 30*time.Second), tg, sc)
	if err != nil || rep.Steps[0].Name != py+" r1.py" {
		t.Fatalf("with $%s=%s: step %q, %v\n%s", PythonEnv, py, rep.Steps[0].Name, err, rep.Output)
	}
	_, err = (&Python{Interpreter: "/nonexistent/python9"}).Configure(ctxT(t, 30*time.Second), tg, sc)
	var pe *PythonError
	if !errors.As(err, &pe) || pe.Path != "" {
		t.Fatalf("Interpreter /nonexistent/python9 (over $%s): %v", PythonEnv, err)
	}
	for _, want := range []string{`python interpreter "/nonexistent/python9" (given with --python`, "not found", "--python PATH or ENDPOINTKIT_PYTHON=PATH"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	t.Setenv(PythonEnv, "")
	t.Setenv("PATH", filepath.Dir(py))
	if rep, err := (&Python{}).Configure(ctxT(t, 30*time.Second), tg, sc); err != nil || rep.Steps[0].Name != filepath.Join(filepath.Dir(py), "python3")+" r1.py" {
		t.Errorf("python3 from PATH: step %q, %v", rep.Steps[0].Name, err)
	}
}

// TestPythonMissingModule: a script importing a module its interpreter
// lacks fails naming the module, the interpreter (a virtual environment
// without the system's packages, here) and how to point at another.
func TestPythonMissingModule(t *testing.T) {
	py := ektest.DebianPython(t, "paramiko")
	venv := filepath.Join(t.TempDir(), "venv")
	if out, err := exec.Command(py, "-m", "venv", "--without-pip", venv).CombinedOutput(); err != nil {
		t.Fatalf("python3 -m venv: %v\n%s", err, out)
	}
	l := newLesson(t)
	file := l.config(0, "hub.py", "import os\nimport paramiko\n")
	tg := Target{Name: "hub", Address: "10.9.8.7", User: "antidote", Password: "antidotepassword"}
	sc := endpoint.StageConfig{Method: endpoint.MethodPython, File: file}
	interp := filepath.Join(venv, "bin", "python3")
	_, err := (&Python{Interpreter: interp}).Configure(ctxT(t, 30*time.Second), tg, sc)
	var pe *PythonError
	var ee *ExitError
	if !errors.Is(err, ErrMissingModule) || !errors.As(err, &pe) || !errors.As(err, &ee) || ee.Status != 1 {
		t.Fatalf("Configure = %v; want a missing module (*PythonError over *ExitError)", err)
	}
	for _, want := range []string{`python module "paramiko" is not installed for ` + interp, "(Python 3.", "given with --python",
		"apt-get install python3-paramiko", interp + " -m pip install paramiko", "--python PATH or ENDPOINTKIT_PYTHON=PATH", "hub.py"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%s", want, err)
		}
	}
	// Debian's interpreter has it (make deps): the same script runs.
	if _, err := (&Python{Interpreter: py}).Configure(ctxT(t, 30*time.Second), tg, sc); err != nil {
		t.Errorf("with %s: %v", py, err)
	}
}
