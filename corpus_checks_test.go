package endpointkit

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"gopkg.in/yaml.v3"
)

// check is one thing a lesson intends, asserted by a shell command on an
// endpoint: it holds when the command exits 0 and prints want.
type check struct {
	endpoint string
	what     string // the intent, for the failure message
	cmd      string
	want     string
}

// stageDeadline bounds how long a stage's checks may take to hold. Lesson
// scripts return before their commands finish (paramiko's exec_command
// does not wait) and daemons restart after them; BGP's connect retry is
// 120 s.
const stageDeadline = 6 * time.Minute

// checkStage runs the checks, retrying the failing ones every 2 s until
// stageDeadline, and reports those that never held.
func checkStage(ctx context.Context, t *testing.T, inst *Instance, checks []check) {
	t.Helper()
	if len(checks) == 0 {
		t.Fatal("no checks: the lesson's intent was not understood")
	}
	clients := map[string]*configure.SSHClient{}
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	run := func(c check) (string, error) {
		cl := clients[c.endpoint]
		if cl == nil {
			var err error
			if cl, err = inst.DialSSH(ctx, c.endpoint); err != nil {
				return "", err
			}
			clients[c.endpoint] = cl
		}
		res, err := cl.Run(ctx, c.cmd)
		if err != nil && res.Status == 0 { // the connection, not the command
			cl.Close()
			delete(clients, c.endpoint)
		}
		return res.Output, err
	}
	deadline := time.Now().Add(stageDeadline)
	pending := checks
	for {
		var failed []check
		var why []string
		for _, c := range pending {
			out, err := run(c)
			if err == nil && strings.Contains(out, c.want) {
				continue
			}
			failed = append(failed, c)
			why = append(why, fmt.Sprintf("%v: %s", err, strings.TrimSpace(out)))
		}
		if len(failed) == 0 {
			t.Logf("%d checks hold", len(checks))
			return
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			for i, c := range failed {
				t.Errorf("%s: %s: `%s` never printed %q: %s", c.endpoint, c.what, c.cmd, c.want, why[i])
			}
			return
		}
		pending = failed
		time.Sleep(2 * time.Second)
	}
}

// corpusChecks are what a corpus lesson intends at a stage: on every
// endpoint its hostname (Antidote named the pod, and so the host, after
// the endpoint) and the lesson's files at /antidote; then the lesson's own.
func corpusChecks(t *testing.T, l *lessonmeta.Lesson, m *endpoint.Model, stage int) []check {
	var cs []check
	for _, ep := range m.Endpoints {
		cs = append(cs,
			check{ep.Name, "hostname", `echo "hostname=$(hostname)."`, "hostname=" + ep.Name + "."},
			check{ep.Name, "the lesson at /antidote", "test -f /antidote/lesson.meta.yaml && echo ok", "ok"})
	}
	if routerLesson(l, m, stage) {
		return append(cs, routerChecks(t, l, m, stage)...)
	}
	guide := guideChecks(t, l)
	if stage >= len(guide) {
		t.Fatalf("no guide checks for %s stage %d", l.Slug, stage)
	}
	return append(cs, guide[stage]...)
}

// routerLesson says whether the lesson's python configs install router
// files (<endpoint>/interfaces) as free-range-routing-introduction does.
func routerLesson(l *lessonmeta.Lesson, m *endpoint.Model, stage int) bool {
	for _, ep := range m.Endpoints {
		if _, err := os.Stat(filepath.Join(l.Dir, fmt.Sprintf("stage%d", stage), "configs", ep.Name, "interfaces")); err != nil {
			return false
		}
	}
	return len(m.Endpoints) > 0
}

// routerChecks derive the intent from the files each endpoint's python
// config installs (stageN/configs/<endpoint>/): the static addresses of its
// ifupdown interfaces file on the interfaces it names, a ping across every
// lesson link between the addresses the two ends' files give the guest
// names of that link (so the image's NIC names must be the lesson's), the
// services the script restarts active, the FRR daemons its daemons file
// enables running (with "-M sysrepo" dropped by the image's frr-compat),
// every bgpd.conf neighbour Established, and every router's loopback
// reachable from every other over the routes BGP carries.
func routerChecks(t *testing.T, l *lessonmeta.Lesson, m *endpoint.Model, stage int) []check {
	dir := filepath.Join(l.Dir, fmt.Sprintf("stage%d", stage), "configs")
	addrs := map[string]map[string][]netip.Prefix{}
	var cs []check
	for _, ep := range m.Endpoints {
		a, err := ifupdownAddrs(filepath.Join(dir, ep.Name, "interfaces"))
		if err != nil {
			t.Fatal(err)
		}
		addrs[ep.Name] = a
		for _, ifc := range sortedKeys(a) {
			dev, _, _ := strings.Cut(ifc, ":")
			for _, p := range a[ifc] {
				cs = append(cs, check{ep.Name, "address " + p.String() + " on " + ifc, "ip -4 -o addr show dev " + dev, "inet " + p.String() + " "})
			}
		}
		script, _ := os.ReadFile(filepath.Join(dir, ep.Name+".py"))
		for _, s := range submatches(`systemctl restart ([\w.@-]+)`, string(script)) {
			cs = append(cs, check{ep.Name, "service " + s + " (the script restarts it)", "systemctl is-active " + s, "active"})
		}
		daemons, _ := os.ReadFile(filepath.Join(dir, ep.Name, "daemons"))
		for _, d := range append([]string{"zebra"}, submatches(`(?m)^(\w+d)=yes`, string(daemons))...) {
			cs = append(cs, check{ep.Name, "FRR daemon " + d, "pgrep -x " + d + " >/dev/null && echo running", "running"})
		}
		if strings.Contains(string(daemons), "-M sysrepo") {
			cs = append(cs, check{ep.Name, "zebra runs without the sysrepo module Debian's FRR lacks (frr-compat)",
				`ps -o args= -C zebra | grep -v sysrepo && sudo journalctl -b -t frr-compat --no-pager | grep -c 'zebra: ignoring "-M sysrepo"'`, "/usr/lib/frr/zebra"})
		}
		bgpd, _ := os.ReadFile(filepath.Join(dir, ep.Name, "bgpd.conf"))
		for _, n := range submatches(`(?m)^\s*neighbor (\S+) remote-as`, string(bgpd)) {
			cs = append(cs, check{ep.Name, "BGP session with " + n, "sudo vtysh -c 'show bgp neighbors " + n + " json' | tr -d ' '", `"bgpState":"Established"`})
		}
	}
	for _, link := range m.Links {
		a, b := m.Endpoint(link.A.Endpoint), m.Endpoint(link.B.Endpoint)
		ga, gb := guestName(a, link.A.Interface), guestName(b, link.B.Interface)
		pa, pb := addrs[a.Name][ga], addrs[b.Name][gb]
		if len(pa) == 0 || len(pb) == 0 {
			t.Fatalf("link %s %s (guest %s) - %s %s (guest %s): the lesson's interfaces files address %v and %v there: the image's NIC names are not the ones the lesson uses",
				a.Name, link.A.Interface, ga, b.Name, link.B.Interface, gb, pa, pb)
		}
		cs = append(cs,
			check{a.Name, fmt.Sprintf("link to %s over %s", b.Name, ga), "ping -c 1 -W 2 " + pb[0].Addr().String(), " 0% packet loss"},
			check{b.Name, fmt.Sprintf("link to %s over %s", a.Name, gb), "ping -c 1 -W 2 " + pa[0].Addr().String(), " 0% packet loss"})
	}
	for _, owner := range m.Endpoints {
		for ifc, ps := range addrs[owner.Name] {
			if ifc != "lo" && !strings.HasPrefix(ifc, "lo:") {
				continue
			}
			for _, from := range m.Endpoints {
				if from.Name == owner.Name {
					continue
				}
				for _, p := range ps {
					cs = append(cs, check{from.Name, fmt.Sprintf("%s's loopback %s over BGP", owner.Name, p.Addr()), "ping -c 1 -W 2 " + p.Addr().String(), " 0% packet loss"})
				}
			}
		}
	}
	return cs
}

func guestName(ep *endpoint.Endpoint, ifc string) string {
	for _, it := range ep.Interfaces {
		if it.Name == ifc {
			return it.GuestName
		}
	}
	return ""
}

// ifupdownAddrs reads the static addresses of an ifupdown interfaces file,
// by interface (aliases such as lo:0 included).
func ifupdownAddrs(path string) (map[string][]netip.Prefix, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string][]netip.Prefix{}
	cur := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) >= 4 && fs[0] == "iface":
			cur = ""
			if fs[2] == "inet" && fs[3] == "static" {
				cur = fs[1]
			}
		case len(fs) == 2 && fs[0] == "address" && cur != "":
			p, err := netip.ParsePrefix(fs[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %v", path, err)
			}
			out[cur] = append(out[cur], p)
		}
	}
	return out, sc.Err()
}

func submatches(re, s string) []string {
	var out []string
	for _, m := range regexp.MustCompile(re).FindAllStringSubmatch(s, -1) {
		out = append(out, m[1])
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// guideChecks are, per stage, commands the lesson's guide has the learner
// type on its one utility endpoint (linux1), with what they print.
// Expected values computed from the lesson's own files are read from them.
func guideChecks(t *testing.T, l *lessonmeta.Lesson) [][]check {
	const ep = "linux1"
	c := func(what, cmd, want string) check { return check{ep, what, cmd, want} }
	switch l.Slug {
	case "linux-basics":
		return [][]check{{
			c("the home directory", "cd ~ && pwd", "/home/antidote"),
			c("mkdir, touch, ls -lha", "cd ~ && mkdir -p newdirectory && cd newdirectory && touch newfile.txt && ls -lha", "newfile.txt"),
			c("sudo", "sudo -n true && echo yes", "yes"),
		}}
	case "bash-introduction":
		return [][]check{
			{c("variables", `foo=beer; echo "I like drinking many ${foo}s!"`, "I like drinking many beers!")},
			{
				c("an exported variable in a script", `foo="FiddlyFoo and BASH too!"; export foo; /antidote/stage1/echofoo.sh`, "FiddlyFoo and BASH too!"),
				c("a sourced script's variable", `. /antidote/stage1/exportvar.sh >/dev/null; echo "bar=$bar"`, "bar=kerfuffle"),
			},
			{c("positional parameters", "/antidote/stage2/checkparms.sh one two three", "You have 1 fewer parameters than expected.")},
		}
	case "python-introduction":
		return [][]check{{
			c("python is Python 3", "python --version", "Python 3."),
			c("the libraries NRE Labs lessons import", "python -c 'import yaml, jinja2, paramiko, scp, requests, netmiko, ncclient, jnpr.junos' && echo imported", "imported"),
		}}
	case "yaml-introduction":
		var list []any
		var dict map[string]any
		readYAML(t, filepath.Join(l.Dir, "stage0", "list.yaml"), &list)
		readYAML(t, filepath.Join(l.Dir, "stage1", "basicdict.yaml"), &dict)
		return [][]check{
			{c("a YAML list in Python", `cd /antidote/stage0/ && python -c "import yaml; l = yaml.load(open('list.yaml', 'r'), Loader=yaml.FullLoader); print('There are %d values in this YAML file' % len(l))"`,
				fmt.Sprintf("There are %d values in this YAML file", len(list)))},
			{c("a YAML dictionary in Python", `cd /antidote/stage1/ && python -c "import yaml; d = yaml.load(open('basicdict.yaml', 'r'), Loader=yaml.FullLoader); print(d['snmpcommunity'])"`,
				fmt.Sprint(dict["snmpcommunity"]))},
		}
	case "jinja-configuration-templates":
		return [][]check{
			{c("a Jinja template", `python -c "from jinja2 import Template; print(Template('{{interface}} has IP address {{ip_address}}').render(interface='ge-0/0/0', ip_address='192.168.1.1'))"`,
				"ge-0/0/0 has IP address 192.168.1.1")},
			{c("a for loop", `python -c "from jinja2 import Environment
env = Environment(trim_blocks=True, lstrip_blocks=True)
t = env.from_string('{% for item in interfaces %}{{ item.interface }} has IP address {{ item.ip_address }}\n{% endfor %}')
print(t.render(interfaces=[{'interface': 'ge-0/0/0', 'ip_address': '192.168.1.1'}, {'interface': 'fxp0', 'ip_address': '172.16.1.1'}]))"`,
				"fxp0 has IP address 172.16.1.1")},
			{c("if and set", `python -c "from jinja2 import Environment
env = Environment(trim_blocks=True, lstrip_blocks=True)
t = env.from_string('''{% set mgmt_interface = 'ge-0/0/0' %}{% for item in interfaces %}{% if item.interface == mgmt_interface %}address {{item.ip_address}};{% endif %}{% endfor %}''')
print(t.render(interfaces=[{'interface': 'ge-0/0/0', 'ip_address': '192.168.1.1'}, {'interface': 'fxp0', 'ip_address': '172.16.1.1'}]))"`,
				"address 192.168.1.1;")},
			{c("template data from YAML", `cd /antidote/stage3/ && python -c "import yaml; from jinja2 import Environment
devices = yaml.load(open('devices.yml', 'r'), Loader=yaml.FullLoader)
t = Environment(trim_blocks=True, lstrip_blocks=True).from_string('host-name {{ device.hostname }};')
print([t.render(device=d) for d in devices])"`,
				"host-name QFX1;")},
			{c("templates from files", `cd /antidote/stage4/ && python -c "from jinja2 import FileSystemLoader, Environment
env = Environment(loader=FileSystemLoader(['.', './dir1', './dir2']), trim_blocks=True, lstrip_blocks=True)
print(env.get_template('device_config.j2').render(route='172.28.0.0/16', next_hop='10.13.106.1', name='ge-0/0/0', unit='0', ip_address='10.13.106.2', hostname='qfx1'))"`,
				"host-name qfx1;")},
		}
	}
	t.Fatalf("no guide checks for corpus lesson %s", l.Slug)
	return nil
}

func readYAML(t *testing.T, path string, v any) {
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(raw, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
