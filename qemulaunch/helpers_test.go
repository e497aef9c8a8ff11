package qemulaunch

import (
	"context"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// blankImage makes an image directory whose only artefact is an empty
// 16 MiB qcow2 disk: QEMU boots SeaBIOS, finds nothing to boot, and idles.
// Enough for lifecycle, QMP and cleanup tests without a guest OS.
func blankImage(t *testing.T) *vmimage.Image {
	t.Helper()
	ektest.RequireQEMU(t)
	dir := t.TempDir()
	out, err := exec.Command("qemu-img", "create", "-q", "-f", "qcow2", filepath.Join(dir, "disk.qcow2"), "16M").CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-img: %v: %s", err, out)
	}
	m := vmimage.Manifest{Slug: "blank", Kind: vmimage.KindDisk, Disk: "disk.qcow2", DiskFormat: "qcow2",
		QEMU: vmimage.QEMUHints{MemoryMiB: 64, Machine: "pc"}}
	if err := vmimage.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	im, err := vmimage.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return im
}

// testLogger logs through t.Log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}

// assertStateClean fails unless only the files allowed to outlive QEMU
// remain in the state dir, and no QEMU process mentions it.
func assertStateClean(t *testing.T, dir StateDir, keep ...string) {
	t.Helper()
	allowed := map[string]bool{"console.log": true, "console.log.1": true, "health": true}
	for _, k := range keep {
		allowed[k] = true
	}
	ents, _ := os.ReadDir(string(dir))
	for _, e := range ents {
		if !allowed[e.Name()] {
			t.Errorf("state dir %s: %s left behind", dir, e.Name())
		}
	}
	if pids, _ := ektest.ProcessesMatching("qemu-system", string(dir)); len(pids) > 0 {
		t.Errorf("QEMU processes left for %s: %v", dir, pids)
	}
}

func bg() context.Context { return context.Background() }

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
