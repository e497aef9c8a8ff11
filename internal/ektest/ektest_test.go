package ektest

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/nsutil"
)

func TestName(t *testing.T) {
	a, b := Name("ekt"), Name("ekt")
	if a == b {
		t.Fatalf("Name returned %q twice", a)
	}
	if len(a) != 15 || !strings.HasPrefix(a, "ekt") {
		t.Fatalf("Name(ekt) = %q; want 15 bytes starting with ekt", a)
	}
}

func TestRepoRoot(t *testing.T) {
	root := RepoRoot(t)
	if _, err := os.Stat(root + "/go.mod"); err != nil {
		t.Fatalf("RepoRoot = %s; no go.mod there", root)
	}
}

func TestNetNSCreatesAndCleans(t *testing.T) {
	RequireRoot(t)
	var name string
	t.Run("inner", func(t *testing.T) {
		name = NetNS(t)
		if !nsutil.Exists(name) {
			t.Fatalf("netns %s not mounted", name)
		}
		// It really is a separate namespace: only lo inside.
		out, err := exec.Command("ip", "-n", name, "-o", "link").CombinedOutput()
		if err != nil {
			t.Skipf("ip not available: %v", err)
		}
		if n := strings.Count(string(out), "\n"); n != 1 {
			t.Fatalf("new netns has %d links; want only lo:\n%s", n, out)
		}
	})
	if nsutil.Exists(name) {
		t.Fatalf("netns %s still exists after the test ended", name)
	}
	AssertClean(t, name)
}

func TestProcessesMatching(t *testing.T) {
	cmd := exec.Command("sleep", "30.123")
	if err := cmd.Start(); err != nil {
		t.Skip(err)
	}
	defer cmd.Process.Kill()
	// Start returns once execve has begun; the new command line shows in
	// /proc a moment later.
	var pids []int
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if pids, err = ProcessesMatching("sleep", "30.123"); err != nil || len(pids) > 0 {
			break
		}
	}
	if err != nil || len(pids) != 1 || pids[0] != cmd.Process.Pid {
		t.Fatalf("ProcessesMatching = %v, %v; want [%d]", pids, err, cmd.Process.Pid)
	}
}
