package wiring

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/google/nftables"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// testInstance returns a random instance name (ektw + hex).
func testInstance() string { return ektest.Name("ektw") }

// testLogger writes the runtime's debug log to the test log.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimRight(string(b), "\n"))
	return len(b), nil
}

// newLocal returns a runtime with its own state root, torn down when the test
// ends whatever happens (the test itself asserts on its own Teardown).
func newLocal(t *testing.T, instance string) *Local {
	t.Helper()
	ektest.RequireRoot(t)
	l := &Local{StateRoot: t.TempDir(), AssignLinkAddresses: true, Logger: testLogger(t)}
	t.Cleanup(func() {
		if err := l.Teardown(context.Background(), l.StateDir(instance)); err != nil {
			t.Errorf("cleanup teardown: %v", err)
		}
	})
	return l
}

// nsRun runs a command inside a namespace with `ip netns exec`.
func nsRun(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

// ping checks that from namespace ns the address answers.
func ping(t *testing.T, ns, addr string) {
	t.Helper()
	if out, err := nsRun(ns, "ping", "-c", "1", "-W", "3", addr); err != nil {
		t.Errorf("ping %s from %s: %v\n%s", addr, ns, err, out)
	}
}

// hostLinks lists the links of the host namespace (or its stand-in).
func hostLinks(t *testing.T, hostNS string) []netlink.Link {
	t.Helper()
	h, err := hostHandle(hostNS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	links, err := h.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	return links
}

func hostHandle(hostNS string) (*netlink.Handle, error) {
	if hostNS == "" {
		return netlink.NewHandle()
	}
	return nsutil.Handle(hostNS)
}

// nftTables lists the ip-family nftables tables of the host (or stand-in).
func nftTables(t *testing.T, hostNS string) []string {
	t.Helper()
	var fd netns.NsHandle
	var err error
	if hostNS == "" {
		fd, err = netns.Get()
	} else {
		fd, err = nsutil.Open(hostNS)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	c, err := nftables.New(nftables.WithNetNSFd(int(fd)))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, tb := range tables {
		names = append(names, tb.Name)
	}
	return names
}

// assertNothingLeft lists what an instance could have left behind — its
// namespaces (with every link and bridge in them), its host link, its
// nftables table and its state file — and fails on any of it.
func assertNothingLeft(t *testing.T, p *Plan, l *Local) {
	t.Helper()
	nss, err := ektest.NetNSWithPrefix(NamePrefix + p.Instance)
	if err != nil {
		t.Fatal(err)
	}
	if len(nss) > 0 {
		t.Errorf("leaked namespaces: %v", nss)
	}
	var leaked []string
	for _, lk := range hostLinks(t, l.HostNetNS) {
		if a := lk.Attrs(); a.Name == p.HostLink {
			leaked = append(leaked, a.Name)
		}
	}
	if len(leaked) > 0 {
		t.Errorf("leaked host links: %v", leaked)
	}
	for _, tb := range nftTables(t, l.HostNetNS) {
		if tb == p.NFTable {
			t.Errorf("leaked nftables table ip %s", tb)
		}
	}
	if _, err := os.Stat(filepath.Join(l.StateDir(p.Instance), StateFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("state file still there (%v)", err)
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// loggerFunc returns a logger that calls fn with every record's message and
// attributes (and also logs them to the test).
func loggerFunc(t testing.TB, fn func(msg string, attrs map[string]string)) *slog.Logger {
	return slog.New(funcHandler{fn: fn, next: testLogger(t).Handler()})
}

type funcHandler struct {
	fn    func(string, map[string]string)
	attrs []slog.Attr
	next  slog.Handler
}

func (h funcHandler) Enabled(context.Context, slog.Level) bool { return true }

func (h funcHandler) Handle(ctx context.Context, r slog.Record) error {
	m := map[string]string{}
	for _, a := range h.attrs {
		m[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool { m[a.Key] = a.Value.String(); return true })
	h.fn(r.Message, m)
	return h.next.Handle(ctx, r)
}

func (h funcHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return funcHandler{fn: h.fn, attrs: append(slices.Clone(h.attrs), as...), next: h.next.WithAttrs(as)}
}

func (h funcHandler) WithGroup(name string) slog.Handler {
	return funcHandler{fn: h.fn, attrs: h.attrs, next: h.next.WithGroup(name)}
}

// runAsNobody runs the named test again, in a copy of the test binary, as
// uid and gid 65534, and fails if it fails.
func runAsNobody(t *testing.T, name string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "wiring-nobody-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "tmp")
	bin := filepath.Join(dir, "wiring.test")
	raw, err := os.ReadFile(os.Args[0])
	if err == nil {
		err = os.WriteFile(bin, raw, 0o755)
	}
	if err == nil {
		err = os.Mkdir(tmp, 0o777)
	}
	if err == nil {
		err = errors.Join(os.Chmod(dir, 0o755), os.Chmod(tmp, 0o777))
	}
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^"+name+"$", "-test.count=1", "-test.v")
	cmd.Dir, cmd.Env = tmp, append(os.Environ(), "TMPDIR="+tmp)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: "+name) {
		t.Fatalf("as nobody: %v\n%s", err, out)
	}
}

// newTriangle returns a runtime (see newLocal) and the plan of the
// validlesson1 triangle under a fresh instance name, with opts.
func newTriangle(t *testing.T, opts Options) (*Local, *Plan) {
	t.Helper()
	opts.Instance = testInstance()
	l := newLocal(t, opts.Instance)
	p, err := NewPlan(triangle(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return l, p
}

// applied is newTriangle, applied.
func applied(t *testing.T, opts Options) (*Local, *Plan, *State) {
	t.Helper()
	l, p := newTriangle(t, opts)
	st, err := l.Apply(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return l, p, st
}

// teardownClean tears the instance down and asserts nothing is left.
func teardownClean(t *testing.T, l *Local, p *Plan) {
	t.Helper()
	if err := l.Teardown(context.Background(), l.StateDir(p.Instance)); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, p, l)
}
