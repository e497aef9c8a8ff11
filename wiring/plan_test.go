package wiring

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
)

func ExampleNewPlan() {
	// antidote-core's validlesson1 triangle, with explicit subnets.
	p, err := NewPlan(triangle(), Options{Instance: "lab1"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Print(p)
	// Output:
	// instance lab1 (lesson valid-lesson): host link ekf584cf, fabric namespace ek-lab1, nftables table ek-lab1
	// endpoints:
	//   foobar1  ek-lab1.foobar1  eth1 10.12.0.2/24, eth2 10.31.0.2/24
	//   foobar2  ek-lab1.foobar2  eth1 10.12.0.3/24, eth2 10.23.0.2/24
	//   foobar3  ek-lab1.foobar3  eth1 10.23.0.3/24, eth2 10.31.0.3/24
	// links:
	//   0  veth  foobar1.eth1 10.12.0.2/24  ↔  foobar2.eth1 10.12.0.3/24  mtu 1500
	//   1  veth  foobar2.eth2 10.23.0.2/24  ↔  foobar3.eth1 10.23.0.3/24  mtu 1500
	//   2  veth  foobar3.eth2 10.31.0.3/24  ↔  foobar1.eth2 10.31.0.2/24  mtu 1500
}

func TestPlanTriangle(t *testing.T) {
	p, err := NewPlan(triangle(), Options{Instance: "lab1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Links) != 3 || len(p.Segments) != 0 || p.Fabric != "ek-lab1" || len(p.HostLink) > maxIfName {
		t.Fatalf("links %d segments %d fabric %q", len(p.Links), len(p.Segments), p.Fabric)
	}
	for _, l := range p.Links {
		if l.Kind != KindVeth || l.MTU != 1500 || !l.A.Address.IsValid() || !l.B.Address.IsValid() {
			t.Errorf("link %d: %+v", l.Index, l)
		}
		if !l.Subnet.Contains(l.A.Address.Addr()) || !l.Subnet.Contains(l.B.Address.Addr()) {
			t.Errorf("link %d: addresses outside %v", l.Index, l.Subnet)
		}
	}
	seen := map[string]bool{}
	for _, e := range p.Endpoints {
		for _, n := range []string{e.Namespace, e.MgmtPort} {
			if seen[n] {
				t.Errorf("name %s used twice", n)
			}
			seen[n] = true
		}
	}
	// JSON round trip keeps everything.
	raw, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back Plan
	if err := json.Unmarshal(raw, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(*p, back) {
		t.Fatalf("JSON round trip changed the plan:\n%s", raw)
	}
	if !strings.Contains(string(raw), `"address":"10.12.0.2/24"`) {
		t.Errorf("JSON lacks the planned address: %s", raw)
	}
}

func TestPlanSegmentAndFallbackAddresses(t *testing.T) {
	// Three connections share 10.0.0.0/24: one segment with six members.
	// The model gives no addresses, so the plan assigns .2… in endpoints
	// order (c is listed first).
	m := buildModel("seg", []string{"c", "a", "b", "d"}, []conn{
		{"a", "b", "10.0.0.0/24"},
		{"b", "c", "10.0.0.0/24"},
		{"c", "a", "10.0.0.0/24"},
		{"a", "d", "10.9.0.0/30"},
		{"b", "d", ""},
	}, true)
	p, err := NewPlan(m, Options{Instance: "seg1", MTU: 9000})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Segments) != 1 || p.Fabric != "ek-seg1" {
		t.Fatalf("segments %+v fabric %q", p.Segments, p.Fabric)
	}
	s := p.Segments[0]
	if s.Bridge != "s0" || len(s.Members) != 6 || !reflect.DeepEqual(s.Links, []int{0, 1, 2}) {
		t.Fatalf("segment %+v", s)
	}
	for i, want := range []Kind{KindBridge, KindBridge, KindBridge, KindVeth, KindVeth} {
		if p.Links[i].Kind != want {
			t.Errorf("link %d kind %s, want %s", i, p.Links[i].Kind, want)
		}
	}
	// c has one interface on the segment (c.eth1 on link 1, c.eth2 on
	// link 2 — two, in fact); endpoints order c, a, b: c's interfaces first.
	got := map[string]string{}
	for _, mb := range s.Members {
		got[mb.Endpoint+"."+mb.Interface] = mb.Address.String()
	}
	want := map[string]string{
		"c.eth1": "10.0.0.2/24", "c.eth2": "10.0.0.3/24",
		"a.eth1": "10.0.0.4/24", "a.eth2": "10.0.0.5/24",
		"b.eth1": "10.0.0.6/24", "b.eth2": "10.0.0.7/24",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("segment addresses\n got %v\nwant %v", got, want)
	}
	if l := p.Links[3]; l.A.Address.String() != "10.9.0.1/30" || l.B.Address.String() != "10.9.0.2/30" {
		// A /30 cannot spare .1 for a gateway: a (before d) gets .1, d .2.
		t.Errorf("link 3 addresses %v %v", l.A.Address, l.B.Address)
	}
	if l := p.Links[4]; l.A.Address.IsValid() || l.B.Address.IsValid() || l.Subnet.IsValid() {
		t.Errorf("link 4 has no explicit subnet but got addresses: %+v", l)
	}
	if p.Links[0].MTU != 1500 {
		t.Errorf("model MTU should win over Options.MTU: %d", p.Links[0].MTU)
	}
}

// The endpoint builder gives each connection .2 and .3 even when several
// share a subnet; the plan numbers such a segment as a whole.
func TestPlanSegmentRenumbersRepeatedAddresses(t *testing.T) {
	m := buildModel("seg", []string{"a", "b", "c"}, []conn{
		{"a", "b", "10.0.0.0/24"}, {"b", "c", "10.0.0.0/24"},
	}, false)
	p, err := NewPlan(m, Options{Instance: "s"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, mb := range p.Segments[0].Members {
		got = append(got, mb.Endpoint+"."+mb.Interface+"="+mb.Address.String())
	}
	want := []string{"a.eth1=10.0.0.2/24", "b.eth1=10.0.0.3/24", "b.eth2=10.0.0.4/24", "c.eth1=10.0.0.5/24"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("segment addresses\n got %v\nwant %v", got, want)
	}
	for _, e := range p.Endpoints {
		for _, i := range e.Interfaces {
			if !i.Address.IsValid() {
				t.Errorf("%s.%s has no address", e.Name, i.Name)
			}
		}
	}
}

func TestPlanVXLAN(t *testing.T) {
	opts := Options{
		Instance:  "x1",
		Placement: map[string]string{"foobar1": "h1", "foobar2": "h2", "foobar3": "h2"},
		Underlay:  map[string]netip.Addr{"h1": netip.MustParseAddr("192.0.2.1"), "h2": netip.MustParseAddr("192.0.2.2")},
	}
	p, err := NewPlan(triangle(), opts)
	if err != nil {
		t.Fatal(err)
	}
	kinds := []Kind{p.Links[0].Kind, p.Links[1].Kind, p.Links[2].Kind}
	if !reflect.DeepEqual(kinds, []Kind{KindVXLAN, KindVeth, KindVXLAN}) {
		t.Fatalf("kinds %v", kinds)
	}
	if p.Links[2].VNI != p.Links[0].VNI+2 || p.Links[0].VNI == 0 || p.Links[0].VNI >= 1<<24 || p.VXLANPort != DefaultVXLANPort {
		t.Errorf("VNIs %d %d port %d", p.Links[0].VNI, p.Links[2].VNI, p.VXLANPort)
	}
	if p.Links[0].HostA != "h1" || p.Links[0].HostB != "h2" {
		t.Errorf("hosts %q %q", p.Links[0].HostA, p.Links[0].HostB)
	}
	delete(opts.Underlay, "h2")
	if _, err := NewPlan(triangle(), opts); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), `"h2"`) {
		t.Errorf("missing underlay: %v", err)
	}
}

func TestPlanErrors(t *testing.T) {
	mod := func(f func(m *endpoint.Model)) *endpoint.Model {
		m := triangle()
		f(m)
		return m
	}
	cases := []struct {
		name string
		m    *endpoint.Model
		opts Options
		is   error
		want string
	}{
		{"nil model", nil, Options{Instance: "a"}, ErrInvalidModel, "no model"},
		{"bad instance", triangle(), Options{Instance: "Bad_Name"}, ErrInvalidOptions, "Bad_Name"},
		{"no instance", triangle(), Options{}, ErrInvalidOptions, "instance name"},
		{"unknown endpoint", mod(func(m *endpoint.Model) { m.Links[1].B.Endpoint = "nope" }), Options{Instance: "a"}, ErrInvalidModel, `link 1 (foobar2.eth2 ↔ nope.eth1): endpoint "nope" does not exist`},
		{"long ifname", mod(func(m *endpoint.Model) { m.Links[0].A.Interface = "averyveryverylongname" }), Options{Instance: "a"}, ErrInvalidModel, "longer than 15"},
		{"eth0", mod(func(m *endpoint.Model) { m.Links[0].A.Interface = "eth0" }), Options{Instance: "a"}, ErrInvalidModel, "eth0 is the management interface"},
		{"iface twice", mod(func(m *endpoint.Model) { m.Links[2].B.Interface = "eth1" }), Options{Instance: "a"}, ErrInvalidModel, `endpoint "foobar1": interface eth1 is on link 0 and link 2`},
		{"dup endpoint", mod(func(m *endpoint.Model) { m.Endpoints[2].Name = "foobar1" }), Options{Instance: "a"}, ErrInvalidModel, `endpoint "foobar1" appears twice`},
		{"bad mtu", mod(func(m *endpoint.Model) { m.Links[1].MTU = 70000 }), Options{Instance: "a"}, ErrInvalidModel, "link 1"},
		{"address outside", mod(func(m *endpoint.Model) {
			m.Endpoints[0].Interfaces[0].Address = netip.MustParsePrefix("10.99.0.2/24")
		}), Options{Instance: "a"}, ErrInvalidModel, "foobar1.eth1: address 10.99.0.2/24 is not a host address of 10.12.0.0/24"},
		{"duplicate address", mod(func(m *endpoint.Model) {
			m.Endpoints[1].Interfaces[0].Address = m.Endpoints[0].Interfaces[0].Address
		}), Options{Instance: "a"}, ErrInvalidModel, "both have address 10.12.0.2"},
		{"subnet too small", mod(func(m *endpoint.Model) { m.Links[0].Subnet = netip.MustParsePrefix("10.12.0.0/31") }), Options{Instance: "a"}, ErrInvalidModel, "link 0"},
		{"placement of unknown", triangle(), Options{Instance: "a", Placement: map[string]string{"ghost": "h"}}, ErrInvalidOptions, `"ghost"`},
		{"publish undeclared", triangle(), Options{Instance: "a", Publish: []Publish{{Endpoint: "foobar1", Port: 8080}}}, ErrInvalidOptions, "foobar1 port 8080: the endpoint does not declare"},
		{"publish proto", triangle(), Options{Instance: "a", Publish: []Publish{{Endpoint: "foobar1", Port: 22, Proto: "sctp"}}}, ErrInvalidOptions, "sctp"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := NewPlan(c.m, c.opts)
			if !errors.Is(err, c.is) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v\nwant %v containing %q", err, c.is, c.want)
			}
		})
	}
}

func TestPlanTooManyEndpoints(t *testing.T) {
	var names []string
	for i := range 254 {
		names = append(names, fmt.Sprintf("e%d", i))
	}
	_, err := NewPlan(buildModel("big", names, nil, false), Options{Instance: "big"})
	if !errors.Is(err, ErrInvalidModel) || !strings.Contains(err.Error(), `endpoint "e253"`) {
		t.Fatalf("err = %v", err)
	}
}
