package endpoint

import (
	"bufio"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

// fakeImages is an Images over a map, for the error paths.
type fakeImages map[string]*lessonmeta.Image

func (f fakeImages) Image(slug string) (*lessonmeta.Image, error) {
	if im, ok := f[slug]; ok {
		return im, nil
	}
	return nil, fmt.Errorf("%w: %q", lessonmeta.ErrNoImage, slug)
}

var _ Images = fakeImages(nil)

// lesson validates src with the given files in a fake lesson directory.
func lesson(t *testing.T, src string, files ...string) *lessonmeta.Lesson {
	t.Helper()
	fsys := fstest.MapFS{}
	for _, f := range files {
		fsys[f] = &fstest.MapFile{Data: []byte("x")}
	}
	raw, err := lessonmeta.Parse("/lessons/t/lesson.meta.yaml", []byte(src), lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l, err := lessonmeta.Validate(raw, fsys, lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

const header = "name: t\nslug: t\ncategory: tools\ntier: local\ndescription: t\nshortDescription: t\n"

// triangle: c is listed before a in endpoints, so the a-c link gives c the
// first address although a is the connection's first end.
const triangle = header + `endpoints:
  - {name: c, image: router, configurationType: napalm, presentations: [{name: cli, port: 22, type: ssh}], additionalPorts: [830, 22]}
  - {name: a, image: linux, presentations: [{name: web, port: 80, type: http}, {name: cli, port: 22, type: ssh}]}
  - {name: b, image: missing, additionalPorts: [8080]}
connections:
  - {a: a, b: b, subnet: 10.1.0.0/24}
  - {a: b, b: c}
  - {a: a, b: c, subnet: "fd00:13::/64"}
stages:
  - {guideType: markdown}
  - {guideType: markdown}
`

func triangleFiles() []string {
	return []string{"stage0/guide.md", "stage1/guide.md", "stage0/configs/c-junos.txt", "stage1/configs/c-eos.txt"}
}

func triangleImages() fakeImages {
	return fakeImages{
		"router": {Slug: "router", Flavor: lessonmeta.FlavorTrusted, SSHUser: "antidote", SSHPassword: "pw", ConfigUser: "cfg", ConfigPassword: "cpw",
			NetworkInterfaces: []string{"em3"}},
		"linux": {Slug: "linux", Flavor: lessonmeta.FlavorUntrusted, SSHUser: "u", EnableForwarding: true},
	}
}

func TestBuildTriangle(t *testing.T) {
	m, err := Build(lesson(t, triangle, triangleFiles()...), triangleImages())
	if err != nil {
		t.Fatal(err)
	}
	if m.Lesson != "t" || m.Dir != "/lessons/t" || m.StageCount != 2 || len(m.Endpoints) != 3 || len(m.Links) != 3 {
		t.Fatalf("model = %+v", m)
	}
	c, a, b := m.Endpoint("c"), m.Endpoint("a"), m.Endpoint("b")

	// Images and credentials.
	if !c.ImageKnown || c.Flavor != "trusted" || c.Credentials != (Credentials{"antidote", "pw", "cfg", "cpw"}) {
		t.Errorf("c image = %v %q %+v", c.ImageKnown, c.Flavor, c.Credentials)
	}
	if !a.EnableForwarding || b.ImageKnown || b.Credentials != (Credentials{}) {
		t.Errorf("a forwarding %v, b known %v", a.EnableForwarding, b.ImageKnown)
	}
	if len(m.Warnings) != 2 || !strings.Contains(m.Warnings[0], `image "missing" has no image.meta.yaml`) ||
		!strings.Contains(m.Warnings[1], `endpoint "c": image "router" names 1 data interfaces`) {
		t.Errorf("warnings = %q", m.Warnings)
	}

	// Ports: presentations first, then additionalPorts, no duplicates.
	for _, tc := range []struct {
		ep   *Endpoint
		want string
	}{{c, "[22 830]"}, {a, "[80 22]"}, {b, "[8080]"}} {
		if got := fmt.Sprint(tc.ep.Ports); got != tc.want {
			t.Errorf("%s ports = %s, want %s", tc.ep.Name, got, tc.want)
		}
	}

	// Interfaces in connection order per endpoint; guest names from the
	// image while it names them.
	wantIf := map[string][]string{
		"a": {"eth1 eth1 b eth1 10.1.0.2/24", "eth2 eth2 c eth2 fd00:13::3/64"},
		"b": {"eth1 eth1 a eth1 10.1.0.3/24", "eth2 eth2 c eth1 invalid Prefix"},
		"c": {"eth1 em3 b eth2 invalid Prefix", "eth2 eth2 a eth2 fd00:13::2/64"},
	}
	for _, e := range m.Endpoints {
		var got []string
		for _, i := range e.Interfaces {
			got = append(got, fmt.Sprintf("%s %s %s %s %s", i.Name, i.GuestName, i.Peer, i.PeerInterface, i.Address))
			if i.MTU != DefaultMTU {
				t.Errorf("%s %s MTU %d", e.Name, i.Name, i.MTU)
			}
		}
		if fmt.Sprint(got) != fmt.Sprint(wantIf[e.Name]) {
			t.Errorf("%s interfaces:\n got %q\nwant %q", e.Name, got, wantIf[e.Name])
		}
	}

	// Links.
	if l := m.Links[1]; l.Explicit || l.Subnet != netip.MustParsePrefix(lessonmeta.DefaultSubnet) ||
		l.A != (LinkEnd{"b", "eth2"}) || l.B != (LinkEnd{"c", "eth1"}) || l.MTU != DefaultMTU {
		t.Errorf("link 1 = %+v", l)
	}
	if l := m.Links[2]; !l.Explicit || l.Subnet.String() != "fd00:13::/64" || l.Index != 2 {
		t.Errorf("link 2 = %+v", l)
	}

	// Stages: per stage file and driver; unconfigured endpoints have
	// MethodNone for every stage.
	if got := c.Stages; len(got) != 2 || got[0].File != "/lessons/t/stage0/configs/c-junos.txt" || got[0].Driver != "junos" ||
		got[1].Driver != "eos" || got[1].Method != MethodNapalm || got[1].Stage != 1 {
		t.Errorf("c stages = %+v", got)
	}
	if got := a.Stages; len(got) != 2 || got[0].Method != MethodNone || got[0].File != "" {
		t.Errorf("a stages = %+v", got)
	}
}

func TestMACs(t *testing.T) {
	l := lesson(t, triangle, triangleFiles()...)
	m1, err := Build(l, triangleImages())
	if err != nil {
		t.Fatal(err)
	}
	m2, _ := Build(l, nil)
	seen := map[string]string{}
	for i, e := range m1.Endpoints {
		macs := []struct {
			name string
			mac  []byte
		}{{e.Name + "/eth0", e.ManagementMAC}}
		for k, itf := range e.Interfaces {
			macs = append(macs, struct {
				name string
				mac  []byte
			}{e.Name + "/" + itf.Name, itf.MAC})
			if m2.Endpoints[i].Interfaces[k].MAC.String() != itf.MAC.String() {
				t.Errorf("%s %s: MAC differs between builds", e.Name, itf.Name)
			}
		}
		for _, x := range macs {
			if len(x.mac) != 6 || x.mac[0]&0x01 != 0 || x.mac[0]&0x02 == 0 {
				t.Errorf("%s: %x is not a locally administered unicast MAC", x.name, x.mac)
			}
			s := fmt.Sprintf("%x", x.mac)
			if prev, dup := seen[s]; dup {
				t.Errorf("%s and %s share MAC %s", prev, x.name, s)
			}
			seen[s] = x.name
		}
	}
	if len(seen) != 3+6 {
		t.Errorf("%d MACs, want 9", len(seen))
	}
	// The documented derivation, computed independently.
	sum := sha256.Sum256([]byte("endpointkit-mac\x00t\x00c\x00eth0"))
	sum[0] = sum[0]&0xfe | 0x02
	if want := net.HardwareAddr(sum[:6]).String(); m1.Endpoint("c").ManagementMAC.String() != want {
		t.Errorf("c management MAC %s, want %s", m1.Endpoint("c").ManagementMAC, want)
	}
	// Another lesson slug gives other MACs.
	other := lesson(t, strings.Replace(triangle, "slug: t", "slug: u", 1), triangleFiles()...)
	m3, _ := Build(other, nil)
	if m3.Endpoints[0].ManagementMAC.String() == m1.Endpoints[0].ManagementMAC.String() {
		t.Error("two lessons share a management MAC")
	}
	// Two instances of one lesson: no MAC in common; the default instance
	// (the slug) keeps the lesson's MACs.
	mA, _ := Options{Instance: "class-a"}.Build(l, nil)
	mB, _ := Options{Instance: "class-b"}.Build(l, nil)
	mSlug, _ := Options{Instance: l.Slug}.Build(l, nil)
	seen = map[string]string{}
	for _, m := range []*Model{mA, mB} {
		for _, e := range m.Endpoints {
			macs := []string{e.ManagementMAC.String()}
			for _, it := range e.Interfaces {
				macs = append(macs, it.MAC.String())
			}
			for _, mac := range macs {
				if other, dup := seen[mac]; dup {
					t.Errorf("MAC %s of %s also used by %s", mac, e.Name, other)
				}
				seen[mac] = e.Name
			}
		}
	}
	if mSlug.Endpoints[0].ManagementMAC.String() != m1.Endpoints[0].ManagementMAC.String() {
		t.Error("the default instance changed the lesson's MACs")
	}
}

func TestMACCollisionIsResolved(t *testing.T) {
	b := &builder{m: &Model{}, instance: "x", macs: map[string]string{}}
	first := b.mac("r1", "eth1")
	b2 := &builder{m: &Model{}, instance: "x", macs: map[string]string{first.String(): "someone else"}}
	again := b2.mac("r1", "eth1")
	if again.String() == first.String() || again[0]&0x03 != 0x02 {
		t.Fatalf("collision not resolved: %s then %s", first, again)
	}
}

func TestBuildOptionsAndErrors(t *testing.T) {
	l := lesson(t, triangle, triangleFiles()...)
	m, err := Options{MTU: 9000}.Build(l, nil)
	if err != nil || m.Links[0].MTU != 9000 || m.Endpoints[0].Interfaces[0].MTU != 9000 {
		t.Fatalf("MTU 9000: %v %+v", err, m.Links[0])
	}
	if _, err := (Options{MTU: 20}).Build(l, nil); err == nil {
		t.Error("MTU 20 accepted")
	}
	if _, err := Build(nil, nil); err == nil {
		t.Error("nil lesson accepted")
	}
	// Validated without its directory: configs are unresolved.
	raw, _ := lessonmeta.Parse("/lessons/t/lesson.meta.yaml", []byte(triangle), lessonmeta.Options{})
	bare, err := lessonmeta.Validate(raw, nil, lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Build(bare, nil); !errors.Is(err, ErrFilesNotChecked) {
		t.Errorf("want ErrFilesNotChecked, got %v", err)
	}
	// A broken image metafile is a warning, not a failure.
	broken := errImages{err: errors.New("image.meta.yaml:3:1: flavor: is required")}
	m, err = Build(l, broken)
	if err != nil || m.Endpoints[0].ImageKnown || !strings.Contains(m.Warnings[0], "flavor: is required") {
		t.Errorf("broken image: %v %q", err, m.Warnings)
	}
}

type errImages struct{ err error }

func (e errImages) Image(string) (*lessonmeta.Image, error) { return nil, e.err }

// TestBuildCorpus builds every corpus lesson against the corpus images.
func TestBuildCorpus(t *testing.T) {
	corpus := filepath.Join(ektest.SharedDir(t), "corpus")
	images := lessonmeta.ImageDirs{filepath.Join(corpus, "images")}
	files, _ := filepath.Glob(filepath.Join(corpus, "lessons", "*", lessonmeta.LessonFile))
	for _, f := range files {
		l, err := lessonmeta.Load(f, lessonmeta.Options{})
		if err != nil {
			t.Fatal(err)
		}
		m, err := Build(l, images)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		links := 0
		for _, e := range m.Endpoints {
			links += len(e.Interfaces)
			if len(e.Stages) != len(l.Stages) || len(e.Ports) == 0 {
				t.Errorf("%s %s: %d stages, ports %v", l.Slug, e.Name, len(e.Stages), e.Ports)
			}
		}
		if links != 2*len(l.Connections) {
			t.Errorf("%s: %d interfaces for %d connections", l.Slug, links, len(l.Connections))
		}
	}
	// jsnapy-network-testing gives subnets: r1 r2 r3 in a triangle.
	l, err := lessonmeta.Load(filepath.Join(corpus, "lessons", "jsnapy-network-testing"), lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := Build(l, images)
	r3 := m.Endpoint("r3")
	if r3.Credentials.SSHUser != "root" || !r3.EnableForwarding ||
		r3.Interfaces[0].Address.String() != "10.23.0.3/24" || r3.Interfaces[1].Address.String() != "10.31.0.3/24" {
		t.Errorf("r3 = %+v", r3)
	}
}

// TestLinuxTriangleScriptsMatchPlan: the example lesson's stage 0 scripts
// assign exactly the addresses the plan derives, on the planned interfaces,
// and stage 1 renumbers every interface into subnets shared by each link.
func TestLinuxTriangleScriptsMatchPlan(t *testing.T) {
	dir := filepath.Join(ektest.RepoRoot(t), "examples", "lessons", "linux-triangle")
	l, err := lessonmeta.Load(dir, lessonmeta.Options{Strict: true})
	if err != nil {
		t.Fatal(err)
	}
	m, err := Build(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	stage1 := map[string]netip.Prefix{} // endpoint/interface → stage 1 address
	for _, e := range m.Endpoints {
		s0 := scriptAddrs(t, e.Stages[0].File)
		if len(s0) != len(e.Interfaces) {
			t.Errorf("%s stage 0 sets %d interfaces, the plan has %d", e.Name, len(s0), len(e.Interfaces))
		}
		for _, i := range e.Interfaces {
			if got := s0[i.GuestName]; got != i.Address {
				t.Errorf("%s %s: stage 0 sets %v, the plan says %v", e.Name, i.GuestName, got, i.Address)
			}
		}
		s1 := scriptAddrs(t, e.Stages[1].File)
		for _, i := range e.Interfaces {
			p, ok := s1[i.GuestName]
			if !ok || p == i.Address || p.Masked() == i.Address.Masked() {
				t.Errorf("%s %s: stage 1 address %v does not renumber %v", e.Name, i.GuestName, p, i.Address)
			}
			stage1[e.Name+"/"+i.Name] = p
		}
	}
	for _, link := range m.Links {
		a, b := stage1[link.A.Endpoint+"/"+link.A.Interface], stage1[link.B.Endpoint+"/"+link.B.Interface]
		if a.Masked() != b.Masked() || a.Addr() == b.Addr() {
			t.Errorf("link %d: stage 1 gives %v and %v", link.Index, a, b)
		}
	}
}

var addrRE = regexp.MustCompile(`^sudo ip addr add (\S+) dev (\S+)$`)

// scriptAddrs reads `sudo ip addr add ADDR dev IF` lines of a stage script.
func scriptAddrs(t *testing.T, file string) map[string]netip.Prefix {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]netip.Prefix{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if m := addrRE.FindStringSubmatch(strings.TrimSpace(sc.Text())); m != nil {
			out[m[2]] = netip.MustParsePrefix(m[1])
		}
	}
	return out
}
