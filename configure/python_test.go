package configure

import (
	"errors"
	"os"
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
