package endpointkit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
)

// holdEnv, set to a duration ("20m"), makes a failed lesson test hold its
// instance that long before tearing it down, to look at it live
// (`ip netns exec NS tcpdump`, `lesson ssh`, the state dir). Give go test a
// -timeout longer than that, or the cleanup never runs.
const holdEnv = "ENDPOINTKIT_TEST_HOLD"

// diagnose logs, compactly, what a failed lesson test needs to explain
// itself. Per endpoint: the planned NICs (container name, MAC, peer);
// the guest's view (guestCmd, then its links, addresses and counters,
// over SSH); the host's view of its namespace (each link's state and
// counters, and the launcher's ingress redirects with what they moved);
// the warnings in its launcher log. Then it holds the instance when
// ENDPOINTKIT_TEST_HOLD says so.
func diagnose(ctx context.Context, tb testing.TB, inst *Instance, guestCmd string) {
	tb.Helper()
	var b strings.Builder
	_, m, _, err := loadModel(inst.LessonDir, inst.Name, inst.imageDirs())
	if err != nil {
		fmt.Fprintf(&b, "model: %v\n", err)
	}
	for _, e := range inst.Endpoints {
		fmt.Fprintf(&b, "=== %s (namespace %s, state %s)\n", e.Name, e.Namespace, e.State)
		if m != nil {
			if ep := m.Endpoint(e.Name); ep != nil {
				for _, it := range ep.Interfaces {
					fmt.Fprintf(&b, "plan: %s %s → %s.%s %v\n", it.Name, it.MAC, it.Peer, it.PeerInterface, it.Address)
				}
			}
		}
		cmd := "ip -br link; ip -br addr; tail -n +3 /proc/net/dev | awk '{print $1, \"rx\", $3, \"drop\", $5, \"tx\", $11, \"drop\", $13}'"
		if guestCmd != "" {
			cmd = guestCmd + "; " + cmd
		}
		gctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		res, err := inst.Run(gctx, e.Name, cmd)
		cancel()
		fmt.Fprintf(&b, "--- guest (err %v)\n%s", err, res.Output)
		fmt.Fprintf(&b, "--- host namespace\n%s", hostView(e.Namespace))
		fmt.Fprintf(&b, "--- launcher log (warnings, stitches)\n%s", grepLines(e.Log, "WARN", "ERROR", "stitch"))
	}
	tb.Log("diagnosis:\n" + b.String())
	hold(tb, inst)
}

// hold keeps a failed test's instance up for ENDPOINTKIT_TEST_HOLD, or
// until its HOLD file in the state directory is removed.
func hold(tb testing.TB, inst *Instance) {
	d, err := time.ParseDuration(os.Getenv(holdEnv))
	if err != nil || d <= 0 {
		return
	}
	f := filepath.Join(inst.Dir, "HOLD")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		tb.Logf("%s: %v", holdEnv, err)
		return
	}
	tb.Logf("%s: holding instance %s for %v (lesson ssh --state-root %s --instance %s EP; rm %s to go on)",
		holdEnv, inst.Name, d, filepath.Dir(inst.Dir), inst.Name, f)
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(time.Second) {
		if _, err := os.Stat(f); err != nil {
			return
		}
	}
}

// hostView is one line per link of a namespace (state, MAC, counters) and
// one per ingress redirect (target, packets moved, drops).
func hostView(ns string) string {
	h, err := nsutil.Handle(ns)
	if err != nil {
		return fmt.Sprintf("open %s: %v\n", ns, err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil {
		return fmt.Sprintf("links: %v\n", err)
	}
	names := map[int]string{}
	for _, l := range links {
		names[l.Attrs().Index] = l.Attrs().Name
	}
	var b strings.Builder
	for _, l := range links {
		a := l.Attrs()
		if a.Name == "lo" {
			continue
		}
		fmt.Fprintf(&b, "%-8s %-4s %s %v", a.Name, a.OperState, a.HardwareAddr, a.Flags)
		if s := a.Statistics; s != nil {
			fmt.Fprintf(&b, " rx %d drop %d tx %d drop %d", s.RxPackets, s.RxDropped, s.TxPackets, s.TxDropped)
		}
		b.WriteString("\n")
		fs, err := h.FilterList(l, netlink.MakeHandle(0xffff, 0))
		if err != nil {
			continue // no ingress qdisc
		}
		for _, f := range fs {
			u, ok := f.(*netlink.U32)
			if !ok {
				continue
			}
			fmt.Fprintf(&b, "  ingress u32 prio %#x → %s", u.Priority, names[u.RedirIndex])
			for _, act := range u.Actions {
				if mi, ok := act.(*netlink.MirredAction); ok && mi.Statistics != nil {
					fmt.Fprintf(&b, " moved %d pkts, dropped %d", mi.Statistics.Basic.Packets, mi.Statistics.Queue.Drops)
				}
			}
			b.WriteString("\n")
		}
	}
	return b.String()
}

// grepLines returns the lines of file containing any of words.
func grepLines(file string, words ...string) string {
	data, err := os.ReadFile(file)
	if err != nil {
		return err.Error() + "\n"
	}
	var b strings.Builder
	for line := range strings.Lines(string(data)) {
		for _, w := range words {
			if strings.Contains(line, w) {
				b.WriteString(line)
				break
			}
		}
	}
	return b.String()
}
