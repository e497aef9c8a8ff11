package endpointkit

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// An instance whose `lesson up` died mid-way (its record still "placing",
// the process gone) is shown as such, with how to remove it, and refuses
// configuration; one whose Up still runs is not abandoned.
func TestAbandonedUp(t *testing.T) {
	root := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	write := func(name string, pid int) string {
		dir := filepath.Join(root, name)
		os.MkdirAll(dir, 0o755)
		raw, _ := json.Marshal(Instance{Version: stateVersion, Name: name, Lesson: "pair", LessonDir: pairLesson(t), Stage: -1,
			Placing: true, UpPID: pid, Endpoints: []RunningEndpoint{{Name: "a", State: StateStarting, Stage: -1}}})
		os.WriteFile(filepath.Join(dir, StateFile), raw, 0o600)
		return dir
	}
	inst, err := Open(write("gone", dead.Process.Pid), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !inst.Abandoned() {
		t.Fatalf("an instance whose up (pid %d) ended is not abandoned", dead.Process.Pid)
	}
	eps := inst.Status(context.Background())
	if eps[0].State != StateFailed || !strings.Contains(eps[0].Error, "lesson down --instance gone") {
		t.Errorf("status: %s: %s; want failed, saying how to remove it", eps[0].State, eps[0].Error)
	}
	if err := inst.Configure(context.Background(), 0); !errors.Is(err, ErrAbandoned) {
		t.Errorf("configure: %v; want ErrAbandoned", err)
	}
	live, err := Open(write("live", os.Getpid()), Options{})
	if err != nil {
		t.Fatal(err)
	}
	if live.Abandoned() {
		t.Error("an instance whose up still runs is abandoned")
	}
}
