package main

import (
	"bytes"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
)

// BenchmarkTimeToSSHReady compares, in the same run and alternating, the
// time from exec to "ready" of `endpoint run` (tiny image, container
// namespace, TCG) with a bare qemu-system-x86_64 command line for the same
// image plus a hand-written SSH poll (qemulaunchtest.PollSSH: overlapping
// login attempts every 20 ms).
// Reported: ms of each and their ratio (goal ≤ 1.05).
func BenchmarkTimeToSSHReady(b *testing.B) {
	ektest.RequireQEMU(b)
	im := imagetest.Tiny(b)
	bin, _ := binaries(b)
	c := qemulaunchtest.NewContainer(b, 0)
	var sumEP, sumBare, sumStart time.Duration
	for i := 0; i < b.N; i++ {
		// endpoint run
		state := filepath.Join(b.TempDir(), "state")
		t0 := time.Now()
		cmd := exec.Command("ip", "netns", "exec", c.NS, bin, "run", "--accel", "tcg", "--image", im.Dir,
			"--name", "bench", "--forward", "22", "--state", state)
		out := &lineWriter{ch: make(chan string, 64)}
		cmd.Stdout, cmd.Stderr = out, nil
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		for l := range out.ch {
			if strings.Contains(l, ": QEMU started") {
				sumStart += time.Since(t0)
			}
			if containsReady(l) {
				break
			}
		}
		epT := time.Since(t0)
		sumEP += epT
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()

		// bare QEMU + SSH poll
		port := freePort(b)
		args := []string{"-machine", "pc,accel=tcg", "-m", "256", "-nodefaults", "-no-user-config", "-display", "none",
			"-serial", "null", "-kernel", im.Path(im.Manifest.Kernel), "-initrd", im.Path(im.Manifest.Initrd),
			"-append", im.Manifest.Cmdline + " endpointkit.hostname=bench",
			"-netdev", "user,id=n0,hostfwd=tcp:127.0.0.1:" + strconv.Itoa(port) + "-:22", "-device", "virtio-net-pci,netdev=n0"}
		if cpu := im.Manifest.QEMU.CPU; cpu != "" { // the image's hint, as endpoint run passes it
			args = append(args, "-cpu", cpu)
		}
		t0 = time.Now()
		q := exec.Command("qemu-system-x86_64", args...)
		if err := q.Start(); err != nil {
			b.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		in, err := qemulaunchtest.PollSSH(ctx, addr, user, pass, 20*time.Millisecond)
		cancel()
		if err != nil {
			q.Process.Kill()
			b.Fatalf("bare guest never answered SSH: %v", err)
		}
		sumBare += in.Sub(t0)
		b.Logf("iteration %d: endpoint %v, bare %v", i, epT.Round(time.Millisecond), in.Sub(t0).Round(time.Millisecond))
		q.Process.Kill()
		q.Wait()
	}
	ep := sumEP.Seconds() * 1000 / float64(b.N)
	bare := sumBare.Seconds() * 1000 / float64(b.N)
	b.ReportMetric(ep, "endpoint-ms")
	b.ReportMetric(sumStart.Seconds()*1000/float64(b.N), "exec-to-qemu-ms")
	b.ReportMetric(bare, "bare-ms")
	b.ReportMetric(ep/bare, "ratio")
	b.ReportMetric(0, "ns/op")
}

func freePort(b *testing.B) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lineWriter struct {
	buf []byte
	ch  chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			return len(p), nil
		}
		select {
		case w.ch <- string(w.buf[:i]):
		default:
		}
		w.buf = w.buf[i+1:]
	}
}

func containsReady(l string) bool { return strings.Contains(l, ": ready in ") }
