package wiring

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/nsutil"
)

func validStateJSON(t testing.TB) []byte {
	n := newNames("lab1")
	st := State{Version: stateVersion, Instance: "lab1", HostLink: n.hostLink(), HostLinkMade: true,
		Namespaces: []string{n.fabric(), n.namespace("foobar1"), n.fabric() + "@h2"}, NFTable: n.nftTable()}
	raw, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func TestParseState(t *testing.T) {
	if _, err := parseState(validStateJSON(t)); err != nil {
		t.Fatalf("valid state: %v", err)
	}
	edit := func(f func(m map[string]any)) []byte {
		var m map[string]any
		json.Unmarshal(validStateJSON(t), &m)
		f(m)
		raw, _ := json.Marshal(m)
		return raw
	}
	cases := map[string][]byte{
		"not json":          []byte("{"),
		"version":           edit(func(m map[string]any) { m["version"] = 9 }),
		"foreign namespace": edit(func(m map[string]any) { m["namespaces"] = []string{"ek-lab1", "somebody-else"} }),
		"other instance":    edit(func(m map[string]any) { m["namespaces"] = []string{"ek-lab2.foobar1"} }),
		"dotted endpoint":   edit(func(m map[string]any) { m["namespaces"] = []string{"ek-lab1.a.b"} }),
		"foreign host link": edit(func(m map[string]any) { m["hostLink"] = "eth0" }),
		"foreign table":     edit(func(m map[string]any) { m["nftTable"] = "filter" }),
		"bad instance":      edit(func(m map[string]any) { m["instance"] = "../x" }),
		"host ns path":      edit(func(m map[string]any) { m["hostNetns"] = "../../proc/1/ns/net" }),
	}
	for name, raw := range cases {
		if _, err := parseState(raw); !errors.Is(err, ErrBadState) {
			t.Errorf("%s: parseState = %v; want ErrBadState", name, err)
		}
	}
}

// FuzzParseState: no input panics, and whatever parses names only the
// instance's own resources.
func FuzzParseState(f *testing.F) {
	f.Add(validStateJSON(f))
	f.Add([]byte(`{"version":1,"instance":"a","hostLink":"ekca978112ca1b","namespaces":["ek-a"]}`))
	f.Fuzz(func(t *testing.T, raw []byte) {
		st, err := parseState(raw)
		if err != nil {
			return
		}
		n := newNames(st.Instance)
		for _, ns := range st.Namespaces {
			if !strings.HasPrefix(ns, n.fabric()) || strings.ContainsRune(ns, '/') {
				t.Fatalf("parsed state names namespace %q of instance %q", ns, st.Instance)
			}
		}
		if st.HostLink != n.hostLink() || len(st.HostLink) > maxIfName {
			t.Fatalf("parsed state names host link %q", st.HostLink)
		}
	})
}

// FuzzNewPlan: no model panics NewPlan, and every plan it accepts keeps
// its own invariants (names fit, interfaces unique per endpoint).
func FuzzNewPlan(f *testing.F) {
	seed, _ := json.Marshal(triangle())
	f.Add(seed, "lab1")
	seed, _ = json.Marshal(buildModel("s", []string{"a", "b", "c"}, []conn{{"a", "b", "10.0.0.0/24"}, {"b", "c", "10.0.0.0/24"}}, true))
	f.Add(seed, "x")
	f.Fuzz(func(t *testing.T, raw []byte, instance string) {
		var m endpoint.Model
		if json.Unmarshal(raw, &m) != nil {
			return
		}
		p, err := NewPlan(&m, Options{Instance: instance})
		if err != nil {
			return
		}
		for _, e := range p.Endpoints {
			seen := map[string]bool{}
			for _, i := range e.Interfaces {
				if seen[i.Name] || validIfName(i.Name) != nil || i.Name == "eth0" {
					t.Fatalf("endpoint %s: bad or repeated interface %q", e.Name, i.Name)
				}
				seen[i.Name] = true
			}
		}
		if len(p.HostLink) > maxIfName {
			t.Fatalf("host link %q too long", p.HostLink)
		}
	})
}

// A process that dies in the middle of Apply leaves a state file from
// which another process's Teardown removes everything.
func TestTeardownAfterCrash(t *testing.T) {
	if dir := os.Getenv("WIRING_CRASH_STATE_ROOT"); dir != "" {
		// The child: apply, and die once the namespaces exist.
		p, err := NewPlan(triangle(), Options{Instance: os.Getenv("WIRING_CRASH_INSTANCE")})
		if err != nil {
			t.Fatal(err)
		}
		l := &Local{StateRoot: dir, afterNamespaces: func() { syscall.Kill(os.Getpid(), syscall.SIGKILL) }}
		l.Apply(context.Background(), p)
		t.Fatal("still alive after the crash point")
	}
	inst := testInstance()
	l := newLocal(t, inst)
	cmd := exec.Command(os.Args[0], "-test.run=^TestTeardownAfterCrash$", "-test.count=1")
	cmd.Env = append(os.Environ(), "WIRING_CRASH_STATE_ROOT="+l.StateRoot, "WIRING_CRASH_INSTANCE="+inst)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die by SIGKILL: %v\n%s", err, out)
	}
	p, _ := NewPlan(triangle(), Options{Instance: inst})
	if !nsutil.Exists(p.Endpoints[0].Namespace) {
		t.Fatal("the child made no namespaces before dying")
	}
	if err := (&Local{}).Teardown(context.Background(), filepath.Join(l.StateRoot, inst)); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, p, l)
}
