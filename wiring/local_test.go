package wiring

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"golang.org/x/sys/unix"
)

// listenIn opens a TCP listener inside a namespace and accepts one
// connection after another, answering each with a greeting.
func listenIn(t *testing.T, ns, addr, greeting string) net.Listener {
	t.Helper()
	var ln net.Listener
	err := nsutil.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(greeting))
			c.Close()
		}
	}()
	return ln
}

// readGreeting connects (from the caller's namespace) and reads one line.
func readGreeting(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	var b bytes.Buffer
	_, err = b.ReadFrom(c)
	return b.String(), err
}

func TestTriangle(t *testing.T) {
	l, p, st := applied(t, Options{})
	ctx := context.Background()
	if !st.Complete || len(st.Endpoints) != 3 || !st.MgmtSubnet.IsValid() {
		t.Fatalf("state %+v", st)
	}

	// Every link passes traffic with its planned addresses.
	checkLinks := func() {
		t.Helper()
		for _, lk := range p.Links {
			ping(t, p.endpoint(lk.A.Endpoint).Namespace, lk.B.Address.Addr().String())
			ping(t, p.endpoint(lk.B.Endpoint).Namespace, lk.A.Address.Addr().String())
		}
	}
	checkLinks()

	// The host reaches every endpoint's management address, and a port an
	// endpoint listens on.
	for _, e := range st.Endpoints {
		if out, err := exec.Command("ping", "-c", "1", "-W", "3", e.MgmtAddress.Addr().String()).CombinedOutput(); err != nil {
			t.Errorf("host → %s %v: %v\n%s", e.Name, e.MgmtAddress, err, out)
		}
	}
	e2, _ := st.Endpoint("foobar2")
	listenIn(t, e2.Namespace, e2.MgmtAddress.Addr().String()+":80", "hello from foobar2")
	if got, err := readGreeting(e2.MgmtAddress.Addr().String() + ":80"); err != nil || got != "hello from foobar2" {
		t.Errorf("host → foobar2:80 = %q, %v", got, err)
	}

	// State.Start runs a program inside the endpoint.
	var out bytes.Buffer
	cmd := exec.Command("ip", "-4", "-o", "addr", "show")
	cmd.Stdout = &out
	if err := st.Start("foobar3", cmd); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatal(err)
	}
	e3, _ := st.Endpoint("foobar3")
	for _, want := range []string{"eth0    inet " + e3.MgmtAddress.String(), "eth1    inet 10.23.0.3/24", "eth2    inet 10.31.0.3/24"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("foobar3 addresses lack %q:\n%s", want, out.String())
		}
	}

	// TX checksum offload is off on every interface created.
	checkOffload := func(ns string, names ...string) {
		t.Helper()
		err := nsutil.Do(ns, func() error {
			s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM, 0)
			if err != nil {
				return err
			}
			defer unix.Close(s)
			for _, n := range names {
				on, err := txChecksumOn(s, n)
				if err != nil {
					return err
				}
				if on {
					return fmt.Errorf("%s: tx checksum offload still on", n)
				}
			}
			return nil
		})
		if err != nil {
			t.Errorf("%s: %v", ns, err)
		}
	}
	for _, e := range p.Endpoints {
		checkOffload(e.Namespace, "eth0", e.Interfaces[0].Name, e.Interfaces[1].Name)
	}

	// Apply again: converges without change.
	st2, err := l.Apply(ctx, p)
	if err != nil {
		t.Fatalf("second Apply: %v", err)
	}
	if !reflect.DeepEqual(st.Endpoints, st2.Endpoints) || st.MgmtSubnet != st2.MgmtSubnet {
		t.Errorf("second Apply changed the state:\n%+v\n%+v", st, st2)
	}
	checkLinks()

	// Break things, Apply repairs them: one end of a veth pair gone (the
	// kernel takes the other with it), an address and the default route gone.
	for _, args := range [][]string{
		{"-n", p.Endpoints[0].Namespace, "link", "del", "eth1"},
		{"-n", p.Endpoints[2].Namespace, "addr", "flush", "dev", "eth2"},
		{"-n", p.Endpoints[1].Namespace, "route", "flush", "default"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	if _, err := l.Apply(ctx, p); err != nil {
		t.Fatalf("repairing Apply: %v", err)
	}
	checkLinks()
	checkOffload(p.Endpoints[0].Namespace, "eth1")
	if out, err := nsRun(p.Endpoints[1].Namespace, "ip", "route", "show", "default"); err != nil || !strings.Contains(out, "via "+st.Gateway.String()) {
		t.Errorf("default route not repaired: %v\n%s", err, out)
	}

	if err := l.Teardown(ctx, l.StateDir(p.Instance)); err != nil {
		t.Fatal(err)
	}
	assertNothingLeft(t, p, l)
	if err := l.Teardown(ctx, l.StateDir(p.Instance)); err != nil {
		t.Fatalf("second Teardown: %v", err)
	}
}

// A namespace deleted under Apply: the error names the endpoint, and
// Teardown still removes everything.
func TestFaultNamespaceDeletedMidApply(t *testing.T) {
	l, p := newTriangle(t, Options{Publish: []Publish{{Endpoint: "foobar1", Port: 22}}})
	victim := p.endpoint("foobar2").Namespace
	l.afterNamespaces = func() {
		if err := nsutil.Delete(victim); err != nil {
			t.Errorf("delete %s: %v", victim, err)
		}
	}
	_, err := l.Apply(context.Background(), p)
	t.Logf("Apply: %v", err)
	var ee *EndpointError
	if !errors.As(err, &ee) || ee.Endpoint != "foobar2" || !errors.Is(err, ErrNamespaceGone) || !strings.Contains(err.Error(), "endpoint foobar2") {
		t.Fatalf("Apply = %v; want an EndpointError for foobar2 wrapping ErrNamespaceGone", err)
	}
	// The namespaces that were made are there until Teardown.
	if !nsutil.Exists(p.endpoint("foobar1").Namespace) {
		t.Fatal("foobar1's namespace was not created")
	}
	teardownClean(t, l, p)
}

// Deleting a namespace later in Apply (after links were made in it through
// open sockets) is caught too.
func TestFaultNamespaceDeletedLate(t *testing.T) {
	l, p := newTriangle(t, Options{Publish: []Publish{{Endpoint: "foobar1", Port: 22}}})
	victim := p.endpoint("foobar3").Namespace
	steps := 0
	l.Logger = loggerFunc(t, func(msg string, attrs map[string]string) {
		if msg == "wiring step" && attrs["step"] == "configure" {
			steps++
			nsutil.Delete(victim)
		}
	})
	_, err := l.Apply(context.Background(), p)
	t.Logf("Apply: %v", err)
	if steps != 1 || !errors.Is(err, ErrNamespaceGone) || !strings.Contains(err.Error(), "endpoint foobar3") {
		t.Fatalf("Apply = %v; want ErrNamespaceGone naming foobar3", err)
	}
	// Everything else was made, published ports included.
	if !slices.Contains(nftTables(t, ""), p.NFTable) {
		t.Fatalf("nftables table %s was not made before the failure", p.NFTable)
	}
	teardownClean(t, l, p)
}

func TestNameCollision(t *testing.T) {
	l, p := newTriangle(t, Options{})
	// Someone else's namespace with the name foobar3 needs.
	foreign := p.endpoint("foobar3").Namespace
	if err := nsutil.Create(foreign); err != nil {
		t.Fatal(err)
	}
	defer nsutil.Delete(foreign)
	_, err := l.Apply(context.Background(), p)
	t.Logf("Apply: %v", err)
	if !errors.Is(err, ErrNameCollision) || !strings.Contains(err.Error(), "endpoint foobar3") {
		t.Fatalf("Apply = %v; want ErrNameCollision naming foobar3", err)
	}
	if err := l.Teardown(context.Background(), l.StateDir(p.Instance)); err != nil {
		t.Fatal(err)
	}
	if !nsutil.Exists(foreign) {
		t.Fatal("Teardown deleted a namespace that was not the instance's")
	}
	nsutil.Delete(foreign)
	assertNothingLeft(t, p, l)

	// A host link in the way.
	la := p.HostLink
	if out, err := exec.Command("ip", "link", "add", la, "type", "veth", "peer", "name", la+"x").CombinedOutput(); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	defer exec.Command("ip", "link", "del", la).Run()
	_, err = l.Apply(context.Background(), p)
	t.Logf("Apply: %v", err)
	if !errors.Is(err, ErrNameCollision) || !strings.Contains(err.Error(), "management uplink") || !strings.Contains(err.Error(), la) {
		t.Fatalf("Apply = %v; want ErrNameCollision naming the management uplink %s", err, la)
	}
	if err := l.Teardown(context.Background(), l.StateDir(p.Instance)); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(la); err != nil {
		t.Fatalf("Teardown deleted %s, which was not the instance's: %v", la, err)
	}
}

func TestPoolExhausted(t *testing.T) {
	pool := fmt.Sprintf("10.78.%d.0/24", time.Now().UnixNano()%250)
	instA, instB := testInstance(), testInstance()
	la, lb := newLocal(t, instA), newLocal(t, instB)
	for _, l := range []*Local{la, lb} {
		l.Pool = mustPrefix(pool)
	}
	pa, _ := NewPlan(triangle(), Options{Instance: instA})
	pb, _ := NewPlan(triangle(), Options{Instance: instB})
	if _, err := la.Apply(context.Background(), pa); err != nil {
		t.Fatal(err)
	}
	_, err := lb.Apply(context.Background(), pb)
	t.Logf("Apply: %v", err)
	if !errors.Is(err, ErrPoolExhausted) || !strings.Contains(err.Error(), instB) {
		t.Fatalf("Apply = %v; want ErrPoolExhausted naming the instance", err)
	}
	for _, c := range []struct {
		l *Local
		p *Plan
	}{{la, pa}, {lb, pb}} {
		if err := c.l.Teardown(context.Background(), c.l.StateDir(c.p.Instance)); err != nil {
			t.Fatal(err)
		}
		assertNothingLeft(t, c.p, c.l)
	}
}

// With a VM behind the interfaces, no planned address goes on them.
func TestAddressModes(t *testing.T) {
	l, p := newTriangle(t, Options{})
	l.AssignLinkAddresses, l.SkipMgmtAddress = false, true
	st, err := l.Apply(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range p.Endpoints {
		out, err := nsRun(e.Namespace, "ip", "-4", "-o", "addr", "show", "scope", "global")
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("%s has addresses: %v\n%s", e.Name, err, out)
		}
		// Nor any IPv6 link-local address: the namespace stays silent.
		if out, err := nsRun(e.Namespace, "ip", "-6", "-o", "addr", "show"); err != nil || strings.Contains(out, "eth") {
			t.Errorf("%s has IPv6 addresses: %v\n%s", e.Name, err, out)
		}
		out, err = nsRun(e.Namespace, "ip", "-o", "link", "show", "up")
		for _, want := range []string{"eth0", "eth1", "eth2"} {
			if err != nil || !strings.Contains(out, want+"@") {
				t.Errorf("%s: %s not up: %v\n%s", e.Name, want, err, out)
			}
		}
	}
	// The state still says which management address each guest should use.
	if e, _ := st.Endpoint("foobar1"); !st.MgmtSubnet.Contains(e.MgmtAddress.Addr()) {
		t.Errorf("foobar1 management address %v outside %v", e.MgmtAddress, st.MgmtSubnet)
	}
}

// Remove finds what an instance left by its names alone: the state file
// lost, its namespaces, host link and nftables table still go.
func TestRemoveWithoutState(t *testing.T) {
	l, p, _ := applied(t, Options{Publish: []Publish{{Endpoint: "foobar1", Port: 22}}})
	if err := os.Remove(filepath.Join(l.StateDir(p.Instance), StateFile)); err != nil {
		t.Fatal(err)
	}
	if err := l.Remove(context.Background(), p.Instance); err != nil {
		t.Fatalf("Remove: %v", err)
	}
	assertNothingLeft(t, p, l)
	if err := l.Remove(context.Background(), p.Instance); err != nil {
		t.Errorf("Remove again: %v", err)
	}
	if err := l.Remove(context.Background(), "../etc"); err == nil {
		t.Error("Remove accepted a bad instance name")
	}
}

// A link added to a running instance's plan is made by Apply (converging,
// the other links untouched) and removed again by RemoveLink, state file
// included; applying the plan without it does not bring it back.
func TestAddAndRemoveLinkLive(t *testing.T) {
	ctx := context.Background()
	m := triangle()
	l, p, _ := applied(t, Options{})
	s, err := m.NewLink("foobar1", "foobar2", mustPrefix("10.99.0.0/24"), p.Instance)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.AddLink(s, nil); err != nil {
		t.Fatal(err)
	}
	p2, err := NewPlan(m, Options{Instance: p.Instance})
	if err != nil {
		t.Fatal(err)
	}
	st, err := l.Apply(ctx, p2)
	if err != nil {
		t.Fatal(err)
	}
	added := p2.Links[3]
	if added.Kind != KindVeth || added.A.Interface != "eth3" || added.B.Interface != "eth3" {
		t.Fatalf("added link planned as %+v", added)
	}
	if e1, _ := st.Endpoint("foobar1"); !slices.Contains(e1.Interfaces, "eth3") {
		t.Errorf("state lists foobar1's interfaces %v; want eth3 among them", e1.Interfaces)
	}
	ns1, ns2 := p2.endpoint("foobar1").Namespace, p2.endpoint("foobar2").Namespace
	ping(t, ns1, "10.99.0.3")
	ping(t, ns2, "10.99.0.2")
	for _, lk := range p.Links { // the lesson's links still carry traffic
		ping(t, p.endpoint(lk.A.Endpoint).Namespace, lk.B.Address.Addr().String())
	}

	if err := l.RemoveLink(ctx, p.Instance, added); err != nil {
		t.Fatal(err)
	}
	for _, ns := range []string{ns1, ns2} {
		if out, err := nsRun(ns, "ip", "link", "show", "eth3"); err == nil {
			t.Errorf("%s: eth3 still there:\n%s", ns, out)
		}
	}
	st, err = LoadState(l.StateDir(p.Instance))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range st.Endpoints {
		if slices.Contains(e.Interfaces, "eth3") {
			t.Errorf("state still lists %s eth3", e.Name)
		}
	}
	if err := l.RemoveLink(ctx, p.Instance, added); err != nil {
		t.Errorf("removing again: %v", err)
	}
	if _, err := l.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if out, err := nsRun(ns1, "ip", "link", "show", "eth3"); err == nil {
		t.Errorf("Apply of the plan without the link brought it back:\n%s", out)
	}
	ping(t, ns1, "10.12.0.3")
	teardownClean(t, l, p)
}
