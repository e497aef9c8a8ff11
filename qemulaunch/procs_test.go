package qemulaunch

import (
	"context"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"
)

// fakeLauncherEnv makes the test binary act as a launcher: started as
// `TESTBIN run --state=DIR/EP`, it waits; "polite" exits on SIGTERM,
// "stubborn" ignores it.
const fakeLauncherEnv = "QEMULAUNCH_FAKE_LAUNCHER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(fakeLauncherEnv); mode != "" {
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, syscall.SIGTERM)
		for range sigs {
			if mode == "polite" {
				os.Exit(0)
			}
		}
	}
	os.Exit(m.Run())
}

// startFake starts a fake launcher with its state in root/name.
func startFake(t *testing.T, root, name, mode string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "run", "--state="+filepath.Join(root, name))
	cmd.Env = append(os.Environ(), fakeLauncherEnv+"="+mode)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }() // reaps it: a zombie counts as gone meanwhile
	t.Cleanup(func() { cmd.Process.Kill(); <-done })
	return cmd
}

// Processes finds the launchers of a state root by their command lines,
// and StopProcesses ends them: SIGTERM first, SIGKILL for whoever ignores
// it once the grace has passed.
func TestProcessesStop(t *testing.T) {
	root := t.TempDir()
	polite := startFake(t, root, "a", "polite")
	stubborn := startFake(t, root, "b", "stubborn")
	otherRoot := t.TempDir()
	startFake(t, otherRoot, "c", "polite") // another root: left alone
	var pids []int
	for deadline := time.Now().Add(10 * time.Second); len(pids) < 2 && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		pids = nil
		for _, p := range Processes(root) {
			if !p.Launcher {
				t.Errorf("pid %d not seen as a launcher", p.PID)
			}
			pids = append(pids, p.PID)
		}
	}
	slices.Sort(pids)
	want := []int{polite.Process.Pid, stubborn.Process.Pid}
	slices.Sort(want)
	if !slices.Equal(pids, want) {
		t.Fatalf("Processes(%s) = %v; want %v", root, pids, want)
	}
	if !LauncherRunning(polite.Process.Pid, filepath.Join(root, "a")) || LauncherRunning(polite.Process.Pid, filepath.Join(root, "b")) {
		t.Error("LauncherRunning does not tell the launcher of a state directory")
	}
	time.Sleep(200 * time.Millisecond) // the fakes' signal handlers are set
	t0 := time.Now()
	if err := StopProcesses(context.Background(), root, time.Second); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d < time.Second {
		t.Errorf("StopProcesses returned after %v, before the grace for the stubborn one passed", d)
	}
	if left := Processes(root); !allZombies(left) {
		t.Errorf("left running: %v", left)
	}
	if LauncherRunning(polite.Process.Pid, filepath.Join(root, "a")) {
		t.Error("LauncherRunning after the stop")
	}
	if len(Processes(otherRoot)) != 1 {
		t.Error("the launcher of another root was stopped")
	}
}
