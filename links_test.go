package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/nsutil"
)

// TestLiveLinks is live topology on linux-triangle: up, a second r1–r2
// link added with a subnet, pings across it both ways while the lesson's
// links keep answering, the named refusals (unknown endpoint, not a link,
// a guest without hot-plug, a subnet in use) changing nothing, the link
// removed again (the guest interfaces gone on both sides), a lesson link
// removed, and down leaving nothing.
func TestLiveLinks(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, lessonPath(t, "linux-triangle"), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	hostLink := hostLinkOf(t, opts)
	ssh := map[string]*configure.SSHClient{}
	for _, ep := range []string{"r1", "r2", "r3"} {
		c, err := inst.DialSSH(ctx, ep)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		ssh[ep] = c
	}
	guestNICs := func(ep string) string {
		t.Helper()
		res, err := ssh[ep].Run(ctx, "cd /sys/class/net && for d in eth*; do echo $d $(cat $d/address); done")
		if err != nil {
			t.Fatal(err)
		}
		return res.Output
	}

	// Add: r1 is listed first in the lesson, so it gets .2.
	t0 := time.Now()
	l, err := inst.AddLink(ctx, "r1", "r2", netip.MustParsePrefix("10.99.0.0/24"))
	if err != nil {
		diagnose(ctx, t, inst, "ip addr; ls /sys/bus/pci/slots")
		t.Fatalf("AddLink: %v", err)
	}
	added := time.Since(t0)
	first := firstPing(ctx, t, ssh["r1"], "10.99.0.3")
	t.Logf("link add %v, first ping answered %v after the add began: %s", added.Round(time.Millisecond), first.Sub(t0).Round(time.Millisecond), l)
	if l.A != (AddedEnd{Endpoint: "r1", Interface: "eth3", GuestName: "eth3", MAC: l.A.MAC, PCI: "05.0", Address: netip.MustParsePrefix("10.99.0.2/24")}) ||
		l.B.Endpoint != "r2" || l.B.Interface != "eth3" || l.B.GuestName != "eth3" || l.B.Address.String() != "10.99.0.3/24" {
		t.Errorf("added link = %+v", l)
	}
	for _, end := range []AddedEnd{l.A, l.B} {
		if nics := guestNICs(end.Endpoint); !strings.Contains(nics, "eth3 "+end.MAC) {
			t.Errorf("%s: guest NICs %q lack eth3 with %s", end.Endpoint, nics, end.MAC)
		}
	}
	// Both ways across the new link, and every lesson link still answers
	// (CheckLinks covers the instance's links, the added one too).
	checks, err := inst.CheckLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 8 {
		t.Errorf("CheckLinks: %d checks, want 8 (3 lesson links and the added one, both ways)", len(checks))
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("after the add: %s → %s (%s) via %s: %v", c.From, c.To, c.Address, c.Interface, c.Err)
		}
	}
	// The record knows the link; a reopened instance too.
	again, err := Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Links.Added) != 1 || again.Links.Added[0].String() != "r1:eth3 ↔ r2:eth3 (10.99.0.0/24)" {
		t.Errorf("recorded links %+v", again.Links)
	}

	// A restart of r2 keeps the added link: its launcher boots the VM
	// again with the NIC, and the stage's configuration runs again on it.
	if err := inst.RestartEndpoint(ctx, "r2", false); err != nil {
		t.Fatalf("RestartEndpoint r2 after the add: %v", err)
	}
	ssh["r2"].Close()
	if ssh["r2"], err = inst.DialSSH(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	defer ssh["r2"].Close()
	if nics := guestNICs("r2"); !strings.Contains(nics, "eth3 "+l.B.MAC) {
		t.Errorf("r2 after a restart: guest NICs %q lack eth3 with %s", nics, l.B.MAC)
	}
	if checks, err := inst.CheckLinks(ctx); err != nil || len(checks) != 8 {
		t.Errorf("CheckLinks after r2's restart: %d checks, %v; want 8", len(checks), err)
	} else {
		for _, c := range checks {
			if !c.OK {
				t.Errorf("after r2's restart: %s → %s (%s) via %s: %v", c.From, c.To, c.Address, c.Interface, c.Err)
			}
		}
	}

	// Refusals, each named, each changing nothing.
	before := interfaces(t, inst)
	if _, err := inst.AddLink(ctx, "r1", "r9", netip.Prefix{}); !errors.Is(err, ErrNoEndpoint) || !strings.Contains(err.Error(), `"r9"`) {
		t.Errorf("AddLink to r9: %v; want ErrNoEndpoint naming r9", err)
	}
	if _, err := inst.AddLink(ctx, "r1", "r3", netip.MustParsePrefix("10.12.0.128/25")); !errors.Is(err, ErrBadLink) || !strings.Contains(err.Error(), "overlaps 10.12.0.0/24") {
		t.Errorf("AddLink with a subnet in use: %v; want ErrBadLink", err)
	}
	for _, iface := range []string{"eth0", "eth7"} {
		if _, err := inst.RemoveLink(ctx, "r1", iface); !errors.Is(err, ErrNotLink) || !strings.Contains(err.Error(), "its links: eth1 (to r2:eth1), eth2 (to r3:eth2), eth3 (to r2:eth3)") {
			t.Errorf("RemoveLink r1:%s: %v; want ErrNotLink listing r1's links", iface, err)
		}
	}
	// A guest whose kernel shows no hot-plug slots (they are hidden here
	// under an empty tmpfs) is refused before anything is cabled.
	if _, err := ssh["r3"].Run(ctx, "sudo -n mount -t tmpfs none /sys/bus/pci/slots"); err != nil {
		t.Fatal(err)
	}
	_, err = inst.AddLink(ctx, "r1", "r3", netip.MustParsePrefix("10.98.0.0/24"))
	if !errors.Is(err, ErrNoHotplug) || !strings.Contains(err.Error(), "endpoint r3") || !strings.Contains(err.Error(), "no hot-plug slot") {
		t.Errorf("AddLink to a guest without hot-plug: %v; want ErrNoHotplug naming r3", err)
	}
	if _, err := ssh["r3"].Run(ctx, "sudo -n umount /sys/bus/pci/slots"); err != nil {
		t.Fatal(err)
	}
	if after := interfaces(t, inst); after != before {
		t.Errorf("a refused add changed the namespaces:\nbefore %s\nafter  %s", before, after)
	}
	if nics := guestNICs("r1"); strings.Contains(nics, "eth4") {
		t.Errorf("a refused add left r1's guest a NIC: %q", nics)
	}
	if again, _ := Open(inst.Dir, opts); len(again.Links.Added) != 1 {
		t.Errorf("a refused add changed the record: %+v", again.Links)
	}

	// Remove the added link: the guest interfaces go on both sides.
	ends, err := inst.RemoveLink(ctx, "r2", "eth3")
	if err != nil {
		t.Fatalf("RemoveLink: %v", err)
	}
	if ends != [2]LinkEnd{{"r1", "eth3"}, {"r2", "eth3"}} {
		t.Errorf("removed %v", ends)
	}
	for _, end := range []AddedEnd{l.A, l.B} {
		if nics := guestNICs(end.Endpoint); strings.Contains(nics, "eth3") || strings.Contains(nics, end.MAC) {
			t.Errorf("%s: guest still has the NIC after the removal: %q", end.Endpoint, nics)
		}
	}
	if after := interfaces(t, inst); strings.Contains(after, "eth3") {
		t.Errorf("namespaces after the removal: %s", after)
	}
	// A lesson link goes too (r2–r3), and the record says so.
	if _, err := inst.RemoveLink(ctx, "r3", "eth1"); err != nil {
		t.Fatalf("RemoveLink of the lesson's r2–r3: %v", err)
	}
	if nics := guestNICs("r3"); strings.Contains(nics, "eth1 ") {
		t.Errorf("r3's guest still has eth1: %q", nics)
	}
	again, err = Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.Links.Added) != 0 || fmt.Sprint(again.Links.Removed) != "[r2:eth2]" {
		t.Errorf("recorded links after the removals: %+v", again.Links)
	}
	checks, err = again.CheckLinks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(checks) != 4 {
		t.Errorf("CheckLinks after the removals: %d checks, want 4", len(checks))
	}
	for _, c := range checks {
		if !c.OK {
			t.Errorf("after the removals: %s → %s via %s: %v", c.From, c.To, c.Interface, c.Err)
		}
	}

	if err := again.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	assertClean(t, opts, hostLink)
}

// firstPing pings addr from the guest until it answers and returns when
// the first answer came.
func firstPing(ctx context.Context, t *testing.T, c *configure.SSHClient, addr string) time.Time {
	t.Helper()
	res, err := c.Run(ctx, "for i in $(seq 100); do ping -c 1 -W 1 "+addr+" >/dev/null 2>&1 && exit 0; done; exit 1")
	if err != nil {
		t.Fatalf("no answer from %s: %v %s", addr, err, res.Output)
	}
	return time.Now()
}

// interfaces lists the interfaces of every endpoint namespace.
func interfaces(t *testing.T, inst *Instance) string {
	t.Helper()
	var b strings.Builder
	for _, e := range inst.Endpoints {
		h, err := nsutil.Handle(e.Namespace)
		if err != nil {
			t.Fatal(err)
		}
		links, _ := h.LinkList()
		h.Close()
		fmt.Fprintf(&b, "%s:", e.Name)
		for _, l := range links {
			fmt.Fprintf(&b, " %s", l.Attrs().Name)
		}
		b.WriteString("; ")
	}
	return b.String()
}
