package qemulaunch

import (
	"context"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
)

// BenchmarkReadinessLatency measures how long after the guest's SSH first
// completes a handshake VM.Ready reports ready. An independent poller
// (qemulaunchtest.PollSSH) starts an SSH login attempt every 5 ms from start; latency = Ready's return −
// the poller's first success (negative: Ready noticed first). Goal ≤ 100 ms.
func BenchmarkReadinessLatency(b *testing.B) {
	ektest.RequireQEMU(b)
	im := imagetest.Tiny(b)
	var sum, worst time.Duration
	for i := 0; i < b.N; i++ {
		vm, err := Start(context.Background(), Config{
			Name: "lat", Image: im, Accel: AccelTCG, StateDir: filepath.Join(b.TempDir(), "s"),
			Management: Management{Address: mustAddr("127.0.0.1")},
			Forwards:   []Forward{{GuestPort: 22, HostPort: AutoPort}},
		})
		if err != nil {
			b.Fatal(err)
		}
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(vm.Forwards()[0].HostPort))
		polled := make(chan time.Time, 1)
		pctx, pcancel := context.WithCancel(context.Background())
		go func() {
			if t, err := qemulaunchtest.PollSSH(pctx, addr, "antidote", "antidotepassword", 5*time.Millisecond); err == nil {
				polled <- t
			}
		}()
		if err := vm.Ready(context.Background()); err != nil {
			b.Fatal(err)
		}
		ready := time.Now()
		var first time.Time
		select {
		case first = <-polled:
		case <-time.After(30 * time.Second):
			b.Fatal("poller never got in")
		}
		pcancel()
		lat := ready.Sub(first)
		sum += lat
		worst = max(worst, lat)
		vm.Stop(context.Background())
	}
	b.ReportMetric(float64(sum.Milliseconds())/float64(b.N), "latency-ms")
	b.ReportMetric(float64(worst.Milliseconds()), "worst-ms")
	b.ReportMetric(0, "ns/op")
}
