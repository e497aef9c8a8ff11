// Package ektest holds helpers shared by endpointkit's tests: skips for
// missing privileges and tools, throw-away network namespaces, a stand-in
// vendor disk, the location of the shared corpus and test caches, and leak
// assertions.
//
// Tests that need root, QEMU or a tool call the Require helpers, which skip
// with the reason (and the fix: `make deps`, run as root) when it is missing.
// Leak assertions are scoped to names a test made itself, so packages tested
// in parallel never see each other's resources.
package ektest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/vishvananda/netlink"
)

// RequireRoot skips the test unless it runs as root.
func RequireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root (network namespaces, TAPs, qdiscs): run the tests as root")
	}
}

// RequireTool skips the test unless every named program is on PATH.
func RequireTool(tb testing.TB, names ...string) {
	tb.Helper()
	for _, n := range names {
		if _, err := exec.LookPath(n); err != nil {
			tb.Skipf("needs %s on PATH: run `make deps` to install it", n)
		}
	}
}

// RequireQEMU skips the test unless qemu-system-x86_64 and qemu-img exist.
func RequireQEMU(tb testing.TB) {
	tb.Helper()
	RequireTool(tb, "qemu-system-x86_64", "qemu-img")
}

// RepoRoot returns the module root (the directory holding go.mod).
func RepoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("ektest: go.mod not found above the test's directory")
		}
		dir = parent
	}
}

// SharedDir returns the shared material folder (corpus/, docs/) that sits
// beside the checkout, or $ENDPOINTKIT_SHARED. It skips when there is none,
// as on a user's clone.
func SharedDir(tb testing.TB) string {
	tb.Helper()
	dir := os.Getenv("ENDPOINTKIT_SHARED")
	if dir == "" {
		dir = filepath.Join(RepoRoot(tb), "..", "shared")
	}
	if st, err := os.Stat(filepath.Join(dir, "corpus")); err != nil || !st.IsDir() {
		tb.Skipf("no shared corpus at %s (set ENDPOINTKIT_SHARED to the folder holding corpus/)", dir)
	}
	return filepath.Clean(dir)
}

// CacheDir returns a directory that survives between test packages and runs,
// for expensive artefacts such as built VM images: $ENDPOINTKIT_TEST_CACHE, or
// /var/tmp/endpointkit-test-cache. Never inside the repository.
func CacheDir(tb testing.TB) string {
	tb.Helper()
	dir := CachePath()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatalf("ektest: cache dir: %v", err)
	}
	return dir
}

// CachePath is the directory CacheDir uses, for programs outside tests
// (make kube-up): $ENDPOINTKIT_TEST_CACHE, or /var/tmp/endpointkit-test-cache.
func CachePath() string {
	if dir := os.Getenv("ENDPOINTKIT_TEST_CACHE"); dir != "" {
		return dir
	}
	return "/var/tmp/endpointkit-test-cache"
}

// Name returns prefix followed by random hex, at most 15 bytes long (the
// Linux interface-name limit), unique enough for parallel tests.
func Name(prefix string) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	n := prefix + hex.EncodeToString(b[:])
	if len(n) > 15 {
		n = n[:15]
	}
	return n
}

// NetNS creates a throw-away named network namespace and deletes it when the
// test ends. It skips unless root. The name starts with "ekt".
func NetNS(tb testing.TB) string {
	tb.Helper()
	RequireRoot(tb)
	name := Name("ekt")
	if err := nsutil.Create(name); err != nil {
		tb.Fatalf("ektest: create netns: %v", err)
	}
	tb.Cleanup(func() {
		if err := nsutil.Delete(name); err != nil {
			tb.Errorf("ektest: delete netns %s: %v", name, err)
		}
	})
	return name
}

// NetNSWithPrefix lists the named network namespaces whose names start with
// prefix.
func NetNSWithPrefix(prefix string) ([]string, error) {
	ents, err := os.ReadDir(nsutil.Dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var out []string
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			out = append(out, e.Name())
		}
	}
	return out, nil
}

// LinksWithPrefix lists the links in the host (current) namespace whose names
// start with prefix.
func LinksWithPrefix(prefix string) ([]string, error) {
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		return nil, err
	}
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, prefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}

// ProcessesMatching lists the PIDs whose command line contains every one of
// the given substrings (for example a QEMU binary and a state dir).
func ProcessesMatching(subs ...string) ([]int, error) {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	self := os.Getpid()
	for _, e := range ents {
		pid := 0
		for _, c := range e.Name() {
			if c < '0' || c > '9' {
				pid = -1
				break
			}
			pid = pid*10 + int(c-'0')
		}
		if pid <= 0 || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || len(raw) == 0 {
			continue
		}
		cmd := strings.ReplaceAll(string(raw), "\x00", " ")
		ok := true
		for _, s := range subs {
			if !strings.Contains(cmd, s) {
				ok = false
				break
			}
		}
		if ok {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// AssertClean fails the test if any namespace or host link whose name starts
// with prefix, or any process whose command line contains every string in
// procSubs (when given), is still present.
func AssertClean(tb testing.TB, prefix string, procSubs ...string) {
	tb.Helper()
	if nss, err := NetNSWithPrefix(prefix); err != nil {
		tb.Errorf("ektest: list netns: %v", err)
	} else if len(nss) > 0 {
		tb.Errorf("leaked network namespaces: %v", nss)
	}
	if links, err := LinksWithPrefix(prefix); err != nil {
		tb.Errorf("ektest: list links: %v", err)
	} else if len(links) > 0 {
		tb.Errorf("leaked links: %v", links)
	}
	if len(procSubs) > 0 {
		if pids, err := ProcessesMatching(procSubs...); err != nil {
			tb.Errorf("ektest: list processes: %v", err)
		} else if len(pids) > 0 {
			tb.Errorf("leaked processes matching %q: %v", procSubs, pids)
		}
	}
}

// DebianPython is Debian's Python interpreter, /usr/bin/python3: `make
// deps` installs the libraries NRE Labs lesson scripts import
// (python3-paramiko, python3-scp, …) for it, while the first python3 on a
// developer's PATH (pyenv, a virtualenv) may lack them. Tests that run
// lesson scripts pass it explicitly (configure.Python.Interpreter). It
// skips unless the interpreter imports every named module.
func DebianPython(tb testing.TB, modules ...string) string {
	tb.Helper()
	const py = "/usr/bin/python3"
	if _, err := os.Stat(py); err != nil {
		tb.Skipf("needs Debian's %s: run `make deps`", py)
	}
	if len(modules) > 0 {
		if out, err := exec.Command(py, "-c", "import "+strings.Join(modules, ", ")).CombinedOutput(); err != nil {
			tb.Skipf("%s lacks a module of %v: run `make deps`: %s", py, modules, strings.TrimSpace(string(out)))
		}
	}
	return py
}
