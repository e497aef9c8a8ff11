package endpointkit

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
)

// launcher is the endpoint binary built once per test run.
var launcher struct {
	once sync.Once
	dir  string
	path string
	err  error
}

func TestMain(m *testing.M) {
	if os.Getenv(soakChildEnv) != "" { // the soak's `lesson up` stand-in
		os.Exit(soakChild())
	}
	code := m.Run()
	if launcher.dir != "" {
		os.RemoveAll(launcher.dir)
	}
	os.Exit(code)
}

// launcherBinary builds cmd/endpoint once for the whole test binary.
func launcherBinary(tb testing.TB) string {
	tb.Helper()
	launcher.once.Do(func() {
		launcher.dir, launcher.err = os.MkdirTemp("", "ek-launcher")
		if launcher.err != nil {
			return
		}
		launcher.path = filepath.Join(launcher.dir, LauncherName)
		out, err := exec.Command("go", "build", "-o", launcher.path, "./cmd/endpoint").CombinedOutput()
		if err != nil {
			launcher.err = fmt.Errorf("go build ./cmd/endpoint: %v\n%s", err, out)
		}
	})
	if launcher.err != nil {
		tb.Fatal(launcher.err)
	}
	return launcher.path
}

// requireLaunch skips unless the machine can launch lessons.
func requireLaunch(tb testing.TB) {
	tb.Helper()
	ektest.RequireRoot(tb)
	ektest.RequireQEMU(tb)
	ektest.RequireTool(tb, "go")
}

// logWriter sends log lines to the test log while the test runs.
type logWriter struct {
	mu   sync.Mutex
	tb   testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.tb.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

// testOptions are Options for a test instance: a random name, a private
// state root, TCG, the test image cache, images given by slug.
func testOptions(tb testing.TB, images map[string]string) Options {
	tb.Helper()
	lw := &logWriter{tb: tb}
	tb.Cleanup(func() { lw.mu.Lock(); lw.done = true; lw.mu.Unlock() })
	root, err := os.MkdirTemp("/run", "ekt")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(root) })
	return Options{
		Instance:  ektest.Name("ekt"),
		StateRoot: root,
		Launcher:  launcherBinary(tb),
		Accel:     "tcg",
		Images: Catalog{Images: images, Dirs: []string{filepath.Join(root, "no-images")},
			Build: imagebuild.Options{CacheDir: filepath.Join(ektest.CacheDir(tb), "imagebuild"), GoDir: ektest.RepoRoot(tb)}},
		Logger: slog.New(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelInfo})),
		Progress: func(e Event) {
			if e.Err != nil {
				tb.Logf("%6.2fs %-10s %s: %s", e.Elapsed.Seconds(), e.Step, e.Message, text.FirstLine(e.Err.Error()))
				return
			}
			tb.Logf("%6.2fs %-10s %s", e.Elapsed.Seconds(), e.Step, e.Message)
		},
	}
}

// tinyImages gives the tiny image from the test cache.
func tinyImages(tb testing.TB) map[string]string {
	return map[string]string{"tiny": imagetest.Tiny(tb).Dir}
}

// lessonPath is an example lesson of the repository.
func lessonPath(tb testing.TB, name string) string {
	return filepath.Join(ektest.RepoRoot(tb), "examples", "lessons", name)
}

// leftovers lists what remains of an instance: its state directory, its
// processes, namespaces and host link.
func leftovers(opts Options, hostLink string) []string {
	dir := InstanceDir(opts.StateRoot, opts.Instance)
	var left []string
	if _, err := os.Stat(dir); err == nil {
		left = append(left, "state dir "+dir)
	}
	for _, p := range qemulaunch.Processes(dir) {
		left = append(left, fmt.Sprintf("process %d", p.PID))
	}
	for _, pid := range HealerProcesses(dir) {
		left = append(left, fmt.Sprintf("healer %d", pid))
	}
	if pids, _ := ektest.ProcessesMatching("qemu-system", dir+"/"); len(pids) > 0 {
		left = append(left, fmt.Sprintf("qemu %v", pids))
	}
	nss, _ := ektest.NetNSWithPrefix(wiring.NamePrefix + opts.Instance)
	for _, n := range nss {
		left = append(left, "netns "+n)
	}
	if hostLink != "" {
		if links, _ := ektest.LinksWithPrefix(hostLink); len(links) > 0 {
			left = append(left, "link "+hostLink)
		}
	}
	return left
}

// assertClean fails unless nothing of the instance remains.
func assertClean(tb testing.TB, opts Options, hostLink string) {
	tb.Helper()
	if left := leftovers(opts, hostLink); len(left) > 0 {
		tb.Errorf("instance %s left behind: %s", opts.Instance, strings.Join(left, "; "))
	}
}

// hostLinkOf is the instance's host link, read from its wiring state.
func hostLinkOf(tb testing.TB, opts Options) string {
	tb.Helper()
	st, err := wiring.LoadState(InstanceDir(opts.StateRoot, opts.Instance))
	if err != nil {
		tb.Fatalf("wiring state: %v", err)
	}
	return st.HostLink
}

// downAtEnd tears the instance down when the test ends, whatever happened.
func downAtEnd(tb testing.TB, opts Options) {
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		if err := Teardown(ctx, InstanceDir(opts.StateRoot, opts.Instance), opts); err != nil {
			tb.Errorf("teardown: %v", err)
		}
	})
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
