package configure

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/peertest"
)

const ncSystem = `<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><hostname>%s</hostname></system>`

const ncGood = `<?xml version="1.0"?>
<config>
  <system xmlns="urn:ietf:params:xml:ns:yang:ietf-system">
    <hostname>r1-netconf</hostname>
  </system>
  <interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
    <interface>
      <name>eth1</name>
      <description>to r2</description>
      <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>
      <enabled>true</enabled>
    </interface>
  </interfaces>
</config>
`

// ncBad has a value the YANG type rejects.
const ncBad = `<interfaces xmlns="urn:ietf:params:xml:ns:yang:ietf-interfaces">
  <interface>
    <name>eth2</name>
    <type xmlns:ianaift="urn:ietf:params:xml:ns:yang:iana-if-type">ianaift:ethernetCsmacd</type>
    <enabled>maybe</enabled>
  </interface>
</interfaces>
<system xmlns="urn:ietf:params:xml:ns:yang:ietf-system"><hostname>never-set</hostname></system>
`

func netconfTarget(name string, n *peertest.Netconfd, u *peertest.User, l *lesson, file string) Target {
	tg := sshTarget(name, n.SSHD, u, l, stage0(endpoint.MethodNetconf, file))
	tg.NetconfPort = n.SSHD.Port
	return tg
}

func stepNames(r Report) string {
	var s []string
	for _, st := range r.Steps {
		s = append(s, st.Name)
	}
	return strings.Join(s, ",")
}

func TestNetconfCandidateCommitChangesState(t *testing.T) {
	u := peertest.NewUser(t)
	n := peertest.StartNetconfd(t, u, peertest.NetconfdConfig{})
	l := newLesson(t)
	ctx := ctxT(t, 60*time.Second)
	tg := netconfTarget("r1", n, u, l, l.config(0, "r1.xml", ncGood))

	rep, err := (&Netconf{}).Configure(ctx, tg, tg.Stages[0])
	if err != nil {
		t.Fatalf("Configure: %v\nnetconfd:\n%s", err, n.Log())
	}
	if got := stepNames(rep); got != "lock,edit-config,validate,commit,unlock" {
		t.Errorf("steps = %s", got)
	}
	c, err := DialNetconf(ctx, tg, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data, err := c.GetConfig(ctx, "running", "")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<hostname>r1-netconf</hostname>", "<name>eth1</name>", "<description>to r2</description>"} {
		if !strings.Contains(data, want) {
			t.Errorf("running config lacks %s:\n%s", want, data)
		}
	}
	// A value the YANG model rejects: a distinct rpc-error naming the
	// element; the candidate is discarded and running is untouched.
	bad := netconfTarget("r1", n, u, l, l.config(1, "r1.xml", ncBad))
	bad.Stages = []endpoint.StageConfig{{}, {Stage: 1, Method: endpoint.MethodNetconf, File: l.dir + "/stage1/configs/r1.xml"}}
	rep, err = (&Netconf{}).Configure(ctx, bad, bad.Stages[1])
	var re *RPCError
	if !errors.As(err, &re) {
		t.Fatalf("bad value: err = %v; want *RPCError", err)
	}
	t.Logf("rpc-error: %v", err)
	if re.Tag == "" || re.Operation != "edit-config" && re.Operation != "validate" && re.Operation != "commit" || !strings.Contains(re.Path, "enabled") {
		t.Errorf("rpc-error = %+v; want a tag and a path naming enabled", re)
	}
	if !strings.Contains(stepNames(rep), "discard-changes,unlock") {
		t.Errorf("steps after a failure = %s; want discard-changes then unlock", stepNames(rep))
	}
	data, _ = c.GetConfig(ctx, "running", "")
	if strings.Contains(data, "never-set") || strings.Contains(data, "eth2") || !strings.Contains(data, "r1-netconf") {
		t.Errorf("running changed by a failed stage:\n%s", data)
	}
	cand, _ := c.GetConfig(ctx, "candidate", "")
	if strings.Contains(cand, "eth2") {
		t.Errorf("candidate still holds the failed edit:\n%s", cand)
	}
}

func TestNetconfRunningOnlyServer(t *testing.T) {
	u := peertest.NewUser(t)
	n := peertest.StartNetconfd(t, u, peertest.NetconfdConfig{Target: "running"})
	l := newLesson(t)
	ctx := ctxT(t, 60*time.Second)
	tg := netconfTarget("r2", n, u, l, l.config(0, "r2.xml", strings.Replace(ncSystem, "%s", "r2-running", 1)))
	rep, err := (&Netconf{}).Configure(ctx, tg, tg.Stages[0])
	if err != nil {
		t.Fatalf("Configure: %v\n%s", err, n.Log())
	}
	if got := stepNames(rep); got != "lock,edit-config,unlock" {
		t.Errorf("steps on a running-only server = %s", got)
	}
	c, err := DialNetconf(ctx, tg, DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.HasCapability(capCandidate) {
		t.Fatal("server announces :candidate; the test wants a running-only server")
	}
	if data, _ := c.GetConfig(ctx, "running", ""); !strings.Contains(data, "r2-running") {
		t.Errorf("running config:\n%s", data)
	}
}

func TestParseNetconfConfig(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{`<config><a/><b>x</b></config>`, `<a/><b>x</b>`, ""},
		{"<?xml version=\"1.0\"?>\n<a/>\n<b/>", "<a/>\n<b/>", ""},
		{`<config/>`, ``, ""},
		{"<a>\n  <b>\n</a>", "", "f.xml:3:"},
		{"   ", "", "f.xml:1:1: no XML element"},
		{"<a/>junk", "", "text outside any element"},
		{"<a>", "", "f.xml:1:4: unexpected EOF"},
	} {
		got, err := ParseNetconfConfig("f.xml", []byte(tc.in))
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !errors.Is(err, ErrBadConfig) {
				t.Errorf("%q: err = %v; want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func FuzzParseNetconfConfig(f *testing.F) {
	f.Add([]byte(ncGood))
	f.Add([]byte(ncBad))
	f.Add([]byte("<config><a>&amp;</a></config>"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		body, err := ParseNetconfConfig("f.xml", raw)
		if err != nil {
			if !errors.Is(err, ErrBadConfig) {
				t.Fatalf("error without ErrBadConfig: %v", err)
			}
			return
		}
		if len(body) > len(raw) {
			t.Fatalf("body longer than input")
		}
	})
}
