package configure

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/peertest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// TestRunMixedFaults configures ten endpoints at once — some fine, each of
// the others broken in its own way — and checks that every failure is
// distinct and named while the healthy endpoints are configured.
func TestRunMixedFaults(t *testing.T) {
	ektest.RequireTool(t, "ansible-playbook", "sshpass", "python3")
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	n := peertest.StartNetconfd(t, u, peertest.NetconfdConfig{})
	l := newLesson(t)
	mark := func(name string) string { return filepath.Join(u.Home, name+".done") }

	closed, _ := net.Listen("tcp", "127.0.0.1:0")
	closedPort := closed.Addr().(*net.TCPAddr).Port
	closed.Close()

	ssh := func(name, script string) Target {
		return sshTarget(name, s, u, l, stage0(endpoint.MethodSSH, l.config(0, name+".sh", script)))
	}
	targets := []Target{
		ssh("ssh-ok", "touch "+mark("ssh-ok")+"\n"),
		netconfTarget("nc-ok", n, u, l, l.config(0, "nc-ok.xml", strings.Replace(ncSystem, "%s", "nc-ok", 1))),
		sshTarget("py-ok", s, u, l, stage0(endpoint.MethodPython, l.config(0, "py-ok.py", "open('"+mark("py-ok")+"', 'w').close()\n"))),
		sshTarget("py-fail", s, u, l, stage0(endpoint.MethodPython, l.config(0, "py-fail.py", "import sys\nsys.exit(2)\n"))),
		sshTarget("ans-fail", s, u, l, stage0(endpoint.MethodAnsible, l.config(0, "ans-fail.yml", playbookFail))),
		sshTarget("missing", s, u, l, stage0(endpoint.MethodSSH, filepath.Join(l.dir, "stage0/configs/missing.sh"))),
		sshTarget("nothing", s, u, l, stage0(endpoint.MethodNone, "")),
		ssh("badpw", "touch "+mark("badpw")+"\n"),
		ssh("hostkey", "touch "+mark("hostkey")+"\n"),
		ssh("unreach", "true\n"),
		netconfTarget("nc-err", n, u, l, l.config(0, "nc-err.xml", ncBad)),
	}
	targets[7].Password = "not-" + Secret(u.Password)
	targets[8].HostKeys.Pinned = []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:wrongwrongwrongwrongwrongwrongwrongwrongwro"}}
	targets[9].Port = closedPort

	logs, logger := newCapture()
	var progress atomic.Int32
	start := time.Now()
	results := Run(ctxT(t, 3*time.Minute), 0, targets, Options{
		Concurrency: 4,
		Timeout:     90 * time.Second,
		Reach:       &ReachOptions{Timeout: 3 * time.Second, Attempt: time.Second},
		Logger:      logger,
		Progress:    func(Result) { progress.Add(1) },
	})
	t.Logf("%d endpoints in %s", len(targets), time.Since(start))
	if len(results) != len(targets) || int(progress.Load()) != len(targets) {
		t.Fatalf("%d results, %d progress calls for %d targets", len(results), progress.Load(), len(targets))
	}
	var ee *ExitError
	var te *TaskError
	var re *RPCError
	for i, r := range results {
		if r.Endpoint != targets[i].Name {
			t.Fatalf("result %d is %s; want %s (targets' order)", i, r.Endpoint, targets[i].Name)
		}
		t.Logf("%-8s ok=%v skipped=%v %s err=%v", r.Endpoint, r.OK, r.Skipped, r.Duration.Round(time.Millisecond), r.Err)
		if r.Err != nil {
			var e *Error
			if !errors.As(r.Err, &e) || e.Endpoint != r.Endpoint || !strings.Contains(r.Err.Error(), strconv.Quote(r.Endpoint)) {
				t.Errorf("%s: error does not name the endpoint: %v", r.Endpoint, r.Err)
			}
		}
		want := map[string]bool{
			"ssh-ok": r.OK, "nc-ok": r.OK, "py-ok": r.OK, "nothing": r.OK && r.Skipped,
			"py-fail":  errors.As(r.Err, &ee) && ee.Status == 2,
			"ans-fail": errors.As(r.Err, &te) && te.Task == "break things",
			"missing":  errors.Is(r.Err, ErrMissingConfig) && strings.Contains(r.Err.Error(), "missing.sh"),
			"badpw":    errors.Is(r.Err, ErrAuth),
			"hostkey":  errors.Is(r.Err, ErrHostKey),
			"unreach":  errors.Is(r.Err, ErrUnreachable) && r.Duration < 10*time.Second,
			"nc-err":   errors.As(r.Err, &re) && re.Tag == "invalid-value",
		}[r.Endpoint]
		if !want {
			t.Errorf("%s: unexpected result ok=%v err=%v", r.Endpoint, r.OK, r.Err)
		}
	}
	for _, name := range []string{"ssh-ok", "py-ok"} {
		if _, err := os.Stat(mark(name)); err != nil {
			t.Errorf("%s was not configured: %v", name, err)
		}
	}
	for _, name := range []string{"badpw", "hostkey"} {
		if _, err := os.Stat(mark(name)); err == nil {
			t.Errorf("%s ran its script despite failing authentication/host key", name)
		}
	}
	var texts []string
	for _, r := range results {
		texts = append(texts, fmt.Sprint(r.Err), r.Output, fmt.Sprintf("%+v", r.Steps))
	}
	noSecret(t, u.Password, append(texts, logs.String())...)
	if !strings.Contains(logs.String(), "endpoint=ans-fail") {
		t.Errorf("no log record for ans-fail:\n%s", logs.String())
	}
}

func TestRunTimeoutAndStageErrors(t *testing.T) {
	ektest.RequireTool(t, "python3")
	l := newLesson(t)
	slow := l.config(0, "slow.py", "import time\ntime.sleep(60)\n")
	quick := l.config(0, "quick.py", "print('ok')\n")
	anyKey := HostKeyPolicy{InsecureIgnore: true} // the scripts connect nowhere
	targets := []Target{
		{Name: "slow", Address: "127.0.0.1", HostKeys: anyKey, Stages: []endpoint.StageConfig{stage0(endpoint.MethodPython, slow)}},
		{Name: "quick", Address: "127.0.0.1", HostKeys: anyKey, Stages: []endpoint.StageConfig{stage0(endpoint.MethodPython, quick)}},
		{Name: "nostage", Address: "127.0.0.1", HostKeys: anyKey, Stages: []endpoint.StageConfig{stage0(endpoint.MethodPython, quick)}},
		{Name: "nostages", Address: "127.0.0.1"},
		{Name: "nomethod", Address: "127.0.0.1", Stages: []endpoint.StageConfig{stage0("telnet", quick)}},
	}
	targets[2].Stages = nil
	targets[2].Stages = append(targets[2].Stages, stage0(endpoint.MethodPython, quick))
	// The per-endpoint timeout must cut the 60 s script short yet leave a
	// python3 start-up room on a loaded 2-CPU CI machine (1 s did not).
	const timeout = 8 * time.Second
	start := time.Now()
	res := Run(ctxT(t, time.Minute), 0, targets, Options{Timeout: timeout})
	if el := time.Since(start); el > timeout+10*time.Second {
		t.Errorf("Run took %s with a %s per-endpoint timeout", el, timeout)
	}
	if !errors.Is(res[0].Err, ErrTimeout) || !res[1].OK || !res[2].OK || !res[3].OK || !res[3].Skipped || !errors.Is(res[4].Err, ErrUnsupported) {
		for _, r := range res {
			t.Logf("%s ok=%v err=%v", r.Endpoint, r.OK, r.Err)
		}
		t.Fatal("unexpected results")
	}
	res = Run(ctxT(t, time.Minute), 3, targets[1:2], Options{})
	if !errors.Is(res[0].Err, ErrBadConfig) || !strings.Contains(res[0].Err.Error(), "stage 3 does not exist") {
		t.Errorf("missing stage: %v", res[0].Err)
	}
}
