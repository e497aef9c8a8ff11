package qemulaunch

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// The embedded probe bytes are what testdata/kvmprobe.S assembles to.
func TestProbeFirmwareMatchesSource(t *testing.T) {
	ektest.RequireTool(t, "as", "ld")
	dir := t.TempDir()
	obj, bin := filepath.Join(dir, "p.o"), filepath.Join(dir, "p.bin")
	if out, err := exec.Command("as", "--64", "-o", obj, "testdata/kvmprobe.S").CombinedOutput(); err != nil {
		t.Fatalf("as: %v: %s", err, out)
	}
	if out, err := exec.Command("ld", "-e", "0", "-Ttext=0", "--oformat", "binary", "-o", bin, obj).CombinedOutput(); err != nil {
		t.Fatalf("ld: %v: %s", err, out)
	}
	want, _ := os.ReadFile(bin)
	if !bytes.Equal(probeFirmware(), want) {
		t.Fatal("probeCode differs from testdata/kvmprobe.S; regenerate the byte slice")
	}
}

// Under TCG the probe firmware reaches long mode and reports success, so a
// probe failure under KVM means KVM, not the firmware.
func TestProbeFirmwareRunsUnderTCG(t *testing.T) {
	ektest.RequireQEMU(t)
	fw := filepath.Join(t.TempDir(), "probe.bin")
	os.WriteFile(fw, probeFirmware(), 0o644)
	ctx, cancel := context.WithTimeout(bg(), probeTimeout*3)
	defer cancel()
	err := exec.CommandContext(ctx, "qemu-system-x86_64", probeArgs("tcg", fw)...).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != probeExitCode {
		t.Fatalf("probe under TCG: %v, want exit code %d", err, probeExitCode)
	}
}

// auto never returns kvm unless the probe passed; a failed probe is logged
// at warning level. On hosts where KVM works the result must be kvm.
func TestResolveAccelAuto(t *testing.T) {
	ektest.RequireQEMU(t)
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	got, err := ResolveAccel(bg(), AccelAuto, "", log)
	if err != nil {
		t.Fatal(err)
	}
	probe := ProbeKVM(bg(), "")
	switch {
	case probe == nil && got != AccelKVM:
		t.Errorf("KVM works but auto chose %s", got)
	case probe != nil && got != AccelTCG:
		t.Errorf("KVM probe failed (%v) but auto chose %s", probe, got)
	case probe != nil && !strings.Contains(logs.String(), "level=WARN") && !strings.Contains(logs.String(), "FALLING BACK TO TCG"):
		t.Errorf("fallback not logged loudly: %s", logs.String())
	}
	if probe != nil {
		if _, err := ResolveAccel(bg(), AccelKVM, "", log); !errors.Is(err, ErrKVMUnavailable) {
			t.Errorf("explicit kvm on a host without working KVM: %v", err)
		}
	}
	if a, _ := ResolveAccel(bg(), AccelTCG, "", log); a != AccelTCG {
		t.Errorf("tcg -> %s", a)
	}
}
