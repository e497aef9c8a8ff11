package qemulaunch

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func blankConfig(t *testing.T) Config {
	return Config{
		Name: "blank", Image: blankImage(t), Accel: AccelTCG,
		StateDir: filepath.Join(t.TempDir(), "state"),
		Timeouts: Timeouts{StopGrace: 500 * time.Millisecond, TCGFactor: 1},
		Logger:   testLogger(t),
	}
}

// A guest that ignores the ACPI button (SeaBIOS with nothing to boot) is
// quit after the grace period; everything is cleaned up.
func TestStopEscalatesToQuit(t *testing.T) {
	cfg := blankConfig(t)
	vm, err := Start(bg(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := vm.Plan().Dir
	for _, f := range []string{dir.QMPSocket(), dir.ConsoleSocket(), dir.Overlay(), dir.QEMUPID(), dir.LauncherPID(), dir.Argv()} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("while running: %v", err)
		}
	}
	st, err := vm.Status(bg())
	if err != nil || !st.Running || st.Status != "running" {
		t.Fatalf("status = %+v, %v", st, err)
	}
	t0 := time.Now()
	if err := vm.Stop(bg()); err != nil {
		t.Fatal(err)
	}
	ex, err := vm.Wait(bg())
	if err != nil {
		t.Fatal(err)
	}
	if ex.Reason != ExitQuit || ex.Shutdown != "host-qmp-quit" {
		t.Errorf("exit = %s, want quit (host-qmp-quit)", ex)
	}
	if d := time.Since(t0); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("stop took %v; want just over the 500ms grace", d)
	}
	assertStateClean(t, dir)
	if s, _, _ := ReadHealth(dir); s != HealthStopped {
		t.Errorf("health = %q, want stopped", s)
	}
	if err := vm.Stop(bg()); err != nil {
		t.Errorf("second Stop: %v", err)
	}
}

// A cancelled ctx makes Stop skip the grace period.
func TestStopCancelledEscalatesAtOnce(t *testing.T) {
	cfg := blankConfig(t)
	cfg.Timeouts.StopGrace = time.Minute
	vm, err := Start(bg(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg())
	cancel()
	t0 := time.Now()
	if err := vm.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("cancelled Stop took %v", d)
	}
	ex, _ := vm.Wait(bg())
	if ex.Reason != ExitQuit {
		t.Errorf("exit = %s, want quit", ex)
	}
	assertStateClean(t, vm.Plan().Dir)
}

// kill -9 of QEMU from outside: Wait reports it died, cleanup still runs.
func TestQEMUKilledFromOutside(t *testing.T) {
	vm, err := Start(bg(), blankConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(vm.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	ex, err := vm.Wait(bg())
	if !errors.Is(err, ErrDied) || ex.Reason != ExitDied || ex.Signal != syscall.SIGKILL {
		t.Fatalf("Wait = %s, %v; want died by SIGKILL", ex, err)
	}
	assertStateClean(t, vm.Plan().Dir)
	if s, d, _ := ReadHealth(vm.Plan().Dir); s != HealthFailed || !strings.Contains(d, "killed") {
		t.Errorf("health = %q %q", s, d)
	}
	if err := vm.Ready(bg()); err == nil {
		t.Error("Ready succeeded on a dead VM")
	}
}

func TestStartBadInput(t *testing.T) {
	t.Run("missing disk", func(t *testing.T) {
		cfg := blankConfig(t)
		os.Remove(cfg.Image.Path("disk.qcow2"))
		_, err := Start(bg(), cfg)
		if !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "disk") {
			t.Fatalf("err = %v", err)
		}
	})
	t.Run("corrupt disk", func(t *testing.T) {
		cfg := blankConfig(t)
		os.WriteFile(cfg.Image.Path("disk.qcow2"), []byte("not a disk at all"), 0o644)
		_, err := Start(bg(), cfg)
		if !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "disk.qcow2") {
			t.Fatalf("err = %v", err)
		}
		assertStateClean(t, StateDir(cfg.StateDir))
	})
	t.Run("missing binary", func(t *testing.T) {
		cfg := blankConfig(t)
		cfg.Binary = "/nonexistent/qemu"
		_, err := Start(bg(), cfg)
		if err == nil || !strings.Contains(err.Error(), "not found") {
			t.Fatalf("err = %v", err)
		}
		assertStateClean(t, StateDir(cfg.StateDir))
	})
	t.Run("bad extra arg", func(t *testing.T) {
		cfg := blankConfig(t)
		cfg.ExtraArgs = []string{"-no-such-option"}
		_, err := Start(bg(), cfg)
		if err == nil || !strings.Contains(err.Error(), "no-such-option") {
			t.Fatalf("err = %v; want QEMU's complaint", err)
		}
		t.Log(err)
		assertStateClean(t, StateDir(cfg.StateDir))
	})
	t.Run("state dir in use", func(t *testing.T) {
		cfg := blankConfig(t)
		os.MkdirAll(cfg.StateDir, 0o700)
		os.WriteFile(StateDir(cfg.StateDir).LauncherPID(), []byte("1\n"), 0o644)
		_, err := Start(bg(), cfg)
		if !errors.Is(err, ErrAlreadyRunning) {
			t.Fatalf("err = %v", err)
		}
	})
}

// A kernel whose bytes do not match the manifest's sha256 is refused even
// though the hash is checked while QEMU starts.
func TestStartCorruptKernel(t *testing.T) {
	cfg := blankConfig(t)
	dir := cfg.Image.Dir
	os.WriteFile(filepath.Join(dir, "vmlinux"), append([]byte("\x7fELF"), make([]byte, 4096)...), 0o644)
	cfg.Image.Manifest.Kernel = "vmlinux"
	cfg.Image.Manifest.Artifacts = map[string]string{"vmlinux": strings.Repeat("ab", 32)}
	_, err := Start(bg(), cfg)
	if !errors.Is(err, ErrImage) || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("err = %v", err)
	}
	assertStateClean(t, StateDir(cfg.StateDir))
}
