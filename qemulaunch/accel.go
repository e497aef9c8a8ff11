package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// ErrKVMUnavailable is returned by [ResolveAccel] for an explicit kvm
// request on a host where KVM cannot run a guest.
var ErrKVMUnavailable = errors.New("qemulaunch: KVM cannot run a guest on this host")

// probeExitCode is what QEMU exits with when the probe firmware finishes:
// isa-debug-exit turns the byte 0x2a written to port 0xf4 into (0x2a<<1)|1.
const probeExitCode = 0x2a<<1 | 1

// probeTimeout bounds the KVM probe. Under working KVM the firmware runs in
// microseconds; QEMU's own start-up dominates (tens of ms).
const probeTimeout = 3 * time.Second

// ResolveAccel turns want (auto, kvm or tcg) into the accelerator to use.
//
// auto proves KVM works by booting a tiny probe firmware under KVM — reset
// vector to protected mode to 64-bit long mode with paging, a memory
// write/read-back pass, then a write to an isa-debug-exit port — and uses
// KVM only if QEMU exits with the probe's code within a few seconds. Hosts
// where /dev/kvm opens but guests hang or die (nested set-ups) fail the
// probe. The fallback to TCG is logged at warning level: boot deadlines are
// then multiplied (Timeouts.TCGFactor). An explicit kvm runs the same probe
// and returns [ErrKVMUnavailable] when it fails. ctx bounds the probe.
func ResolveAccel(ctx context.Context, want Accel, binary string, log *slog.Logger) (Accel, error) {
	if log == nil {
		log = discard()
	}
	switch want {
	case AccelTCG:
		return AccelTCG, nil
	case AccelKVM, AccelAuto:
	default:
		return "", configErr("Accel", "%q is not one of auto, kvm, tcg", want)
	}
	err := ProbeKVM(ctx, binary)
	if err == nil {
		log.Info("accelerator: KVM runs a probe guest; using kvm")
		return AccelKVM, nil
	}
	if want == AccelKVM {
		return "", fmt.Errorf("%w: %v (use --accel tcg, or auto to fall back)", ErrKVMUnavailable, err)
	}
	log.Warn("accelerator: KVM UNUSABLE, FALLING BACK TO TCG (software emulation, several times slower; boot deadlines scaled)",
		"reason", err.Error(), "hint", "set "+AccelEnv+"=tcg to skip this probe")
	return AccelTCG, nil
}

// ProbeKVM returns nil when a guest demonstrably runs under KVM on this host.
func ProbeKVM(ctx context.Context, binary string) error {
	if binary == "" {
		binary = "qemu-system-x86_64"
	}
	f, err := os.OpenFile("/dev/kvm", os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("open /dev/kvm: %w", err)
	}
	f.Close()
	dir, err := os.MkdirTemp("", "ekkvmprobe")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fw := filepath.Join(dir, "probe.bin")
	if err := os.WriteFile(fw, probeFirmware(), 0o644); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, probeArgs("kvm", fw)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	err = cmd.Run()
	if ctx.Err() != nil {
		return fmt.Errorf("probe guest did not finish within %v under KVM (guest hangs)", probeTimeout)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == probeExitCode {
		return nil
	}
	return fmt.Errorf("probe guest under KVM: %v: %s", err, lastLine(stderr.String()))
}

func probeArgs(accel, firmware string) []string {
	args := []string{"-machine", "pc,accel=" + accel}
	if accel == "kvm" {
		args = append(args, "-cpu", "host")
	}
	return append(args, "-m", "16", "-nodefaults", "-no-user-config", "-display", "none",
		"-bios", firmware, "-device", "isa-debug-exit,iobase=0xf4,iosize=0x04")
}

// probeFirmware returns the 64 KiB probe BIOS image. The code is assembled
// from testdata/kvmprobe.S (a test checks the bytes match); it is loaded at
// 0xffff0000 and entered at the reset vector, 0xfff0.
func probeFirmware() []byte {
	img := make([]byte, 64<<10)
	copy(img, probeCode)
	copy(img[0xfff0:], []byte{0xe9, 0x0d, 0x00}) // jmp 0 (wraps in real mode)
	return img
}

var probeCode = []byte{
	0xfa, 0x2e, 0x66, 0x0f, 0x01, 0x16, 0x10, 0x01, 0x0f, 0x20, 0xc0, 0x66, 0x83, 0xc8, 0x01, 0x0f,
	0x22, 0xc0, 0x66, 0xea, 0x1a, 0x00, 0xff, 0xff, 0x08, 0x00, 0x66, 0xb8, 0x10, 0x00, 0x8e, 0xd8,
	0x8e, 0xc0, 0x8e, 0xd0, 0xbf, 0x00, 0x10, 0x00, 0x00, 0x31, 0xc0, 0xb9, 0x00, 0x10, 0x00, 0x00,
	0xf3, 0xab, 0xc7, 0x05, 0x00, 0x10, 0x00, 0x00, 0x03, 0x20, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x20,
	0x00, 0x00, 0x03, 0x30, 0x00, 0x00, 0xc7, 0x05, 0x00, 0x30, 0x00, 0x00, 0x83, 0x00, 0x00, 0x00,
	0xc7, 0x05, 0x08, 0x30, 0x00, 0x00, 0x83, 0x00, 0x20, 0x00, 0xc7, 0x05, 0x18, 0x20, 0x00, 0x00,
	0x03, 0x40, 0x00, 0x00, 0xc7, 0x05, 0xf8, 0x4f, 0x00, 0x00, 0x83, 0x00, 0xe0, 0xff, 0x0f, 0x20,
	0xe0, 0x83, 0xc8, 0x20, 0x0f, 0x22, 0xe0, 0xb8, 0x00, 0x10, 0x00, 0x00, 0x0f, 0x22, 0xd8, 0xb9,
	0x80, 0x00, 0x00, 0xc0, 0x0f, 0x32, 0x0d, 0x00, 0x01, 0x00, 0x00, 0x0f, 0x30, 0x0f, 0x20, 0xc0,
	0x0d, 0x01, 0x00, 0x00, 0x80, 0x0f, 0x22, 0xc0, 0xea, 0x9f, 0x00, 0xff, 0xff, 0x18, 0x00, 0x48,
	0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0xc1, 0x00, 0x00, 0x02, 0x00, 0x48, 0xb8, 0x5a,
	0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x5a, 0x48, 0x89, 0x07, 0x48, 0x83, 0xc7, 0x08, 0x48, 0xff,
	0xc9, 0x75, 0xf4, 0x48, 0xc7, 0xc7, 0x00, 0x00, 0x20, 0x00, 0x48, 0xc7, 0xc1, 0x00, 0x00, 0x02,
	0x00, 0x48, 0x39, 0x07, 0x75, 0x0e, 0x48, 0x83, 0xc7, 0x08, 0x48, 0xff, 0xc9, 0x75, 0xf2, 0xb0,
	0x2a, 0xe6, 0xf4, 0xf4, 0xb0, 0x11, 0xe6, 0xf4, 0xf4, 0x8d, 0xb4, 0x00, 0x00, 0x8d, 0x74, 0x00,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xcf, 0x00,
	0xff, 0xff, 0x00, 0x00, 0x00, 0x92, 0xcf, 0x00, 0xff, 0xff, 0x00, 0x00, 0x00, 0x9a, 0xaf, 0x00,
	0x1f, 0x00, 0xf0, 0x00, 0xff, 0xff,
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }
