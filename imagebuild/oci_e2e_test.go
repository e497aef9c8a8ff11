package imagebuild_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/containerdtest"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/endpointkit/endpointkit/internal/registrytest"
	"github.com/endpointkit/endpointkit/qemulaunch/qemulaunchtest"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/vishvananda/netlink"
)

// ociBuilder is a builder on the shared test cache.
func ociBuilder(t testing.TB) *imagebuild.Builder {
	return imagebuild.New(imagebuild.Options{CacheDir: filepath.Join(ektest.CacheDir(t), "imagebuild"), GoDir: ektest.RepoRoot(t)})
}

// imageCopy copies an image directory (the cached image is read-only and
// shared with other tests) and loads it: the big artefacts are hard links,
// which nothing writes; manifest.json and the other small files, which a
// test may rewrite, are copies.
func imageCopy(t testing.TB, im *vmimage.Image) *vmimage.Image {
	t.Helper()
	dir := filepath.Join(t.TempDir(), im.Manifest.Slug)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	ents, err := os.ReadDir(im.Dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if !e.Type().IsRegular() {
			continue
		}
		src, dst := filepath.Join(im.Dir, e.Name()), filepath.Join(dir, e.Name())
		if fi, err := e.Info(); err == nil && fi.Size() > 1<<20 {
			must(t, os.Link(src, dst))
			continue
		}
		raw, err := os.ReadFile(src)
		must(t, err)
		must(t, os.WriteFile(dst, raw, 0o644))
	}
	out, err := vmimage.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// tinyOCI is the tiny image with its OCI layout, boot-checked.
func tinyOCI(t testing.TB) (*vmimage.Image, *imagebuild.OCIResult) {
	t.Helper()
	ektest.RequireRoot(t)
	ektest.RequireQEMU(t)
	im := imageCopy(t, imagetest.Tiny(t))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	res, err := ociBuilder(t).BuildOCI(ctx, im, imagebuild.OCIOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !res.BootChecked {
		t.Fatal("the runtime layer was not boot-checked")
	}
	return im, res
}

// The must-show run of issue #11: the tiny endpoint's OCI image pushed to
// a real registry, pulled back by digest, then pulled and run by a real
// containerd + runc with eth0 on a bridge and eth1/eth2 as veths into peer
// namespaces; SSH through eth0, a ping across eth1, the lesson directory
// at /antidote; SIGTERM stops the guest; nothing is left.
func TestOCIRegistryContainerd(t *testing.T) {
	im, res := tinyOCI(t)
	reg := registrytest.Start(t, registrytest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	state := filepath.Join(t.TempDir(), "pushed.json")

	ref := reg.Host + "/endpoints/tiny:v1"
	pr, err := imagebuild.Push(ctx, im.Dir, ref, imagebuild.PushOptions{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if pr.Digest != res.Digest {
		t.Fatalf("pushed digest %s, layout has %s", pr.Digest, res.Digest)
	}
	if pr.Uploaded < res.Size() {
		t.Errorf("first push uploaded %d bytes, less than the layers' %d", pr.Uploaded, res.Size())
	}
	t.Logf("push 1: %d bytes uploaded in %v", pr.Uploaded, pr.Elapsed)

	// Pull back by digest and compare.
	dref, err := name.NewDigest(pr.Pinned())
	if err != nil {
		t.Fatal(err)
	}
	back, err := remote.Image(dref)
	if err != nil {
		t.Fatal(err)
	}
	local, _, err := imagebuild.LoadOCI(im.Dir)
	if err != nil {
		t.Fatal(err)
	}
	lm, _ := local.Manifest()
	bm, err := back.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	if len(bm.Layers) != 3 || bm.Config.Digest != lm.Config.Digest {
		t.Fatalf("pulled manifest %+v, local %+v", bm, lm)
	}
	for i := range lm.Layers {
		if bm.Layers[i].Digest != lm.Layers[i].Digest || bm.Layers[i].Size != lm.Layers[i].Size {
			t.Errorf("layer %d: pulled %v, local %v", i, bm.Layers[i], lm.Layers[i])
		}
	}
	cf, err := back.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.Labels[imagebuild.LabelSSHUser] != "antidote" || cf.Config.Labels[imagebuild.LabelPorts] != "22/tcp" {
		t.Errorf("labels of the pulled config: %v", cf.Config.Labels)
	}
	if tags, _ := reg.Tags("endpoints/tiny"); len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("registry tags %v", tags)
	}

	// A second endpoint image in another repository shares the runtime and
	// launcher layers: only its own layer and config travel.
	variant := imageCopy(t, im)
	m := variant.Manifest
	m.Description = "tiny, second flavour"
	if err := vmimage.Write(variant.Dir, m); err != nil {
		t.Fatal(err)
	}
	variant, _ = vmimage.Load(variant.Dir)
	vres, err := ociBuilder(t).BuildOCI(ctx, variant, imagebuild.OCIOptions{SkipBootCheck: true})
	if err != nil {
		t.Fatal(err)
	}
	pr2, err := imagebuild.Push(ctx, variant.Dir, reg.Host+"/endpoints/tiny-two:v1", imagebuild.PushOptions{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	own := vres.Layers[2].Size
	if pr2.Uploaded < own || pr2.Uploaded > own+64<<10 {
		t.Errorf("second image uploaded %d bytes; want its own layer (%d) plus config and manifest, not the shared %d-byte runtime layer",
			pr2.Uploaded, own, res.Layers[0].Size)
	}
	t.Logf("push 2 (shares the QEMU runtime layer): %d bytes uploaded (%d own layer); push 1: %d", pr2.Uploaded, own, pr.Uploaded)
	// Pushing again sends no blob.
	pr3, err := imagebuild.Push(ctx, im.Dir, ref, imagebuild.PushOptions{StateFile: state})
	if err != nil {
		t.Fatal(err)
	}
	if pr3.Uploaded > 64<<10 {
		t.Errorf("re-push uploaded %d bytes; want only the manifest", pr3.Uploaded)
	}

	runInContainerd(t, reg, ref, pr.Digest)
}

// runInContainerd pulls ref into a private containerd and runs it with the
// test's network and lesson directory.
func runInContainerd(t *testing.T, reg *registrytest.Registry, ref, digest string) {
	d := containerdtest.Start(t, containerdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	if out, err := d.Ctr(ctx, "default", "images", "pull", "--plain-http", ref); err != nil {
		t.Fatalf("ctr pull: %v\n%s", err, out)
	}
	out, err := d.Ctr(ctx, "default", "images", "ls")
	if err != nil || !strings.Contains(out, digest) {
		t.Fatalf("ctr images ls lacks %s: %v\n%s", digest, err, out)
	}
	n := newEndpointNet(t)
	lesson := t.TempDir()
	os.WriteFile(filepath.Join(lesson, "lesson.txt"), []byte("from the lesson directory\n"), 0o644)
	name := ektest.Name("ep")
	c := startContainer(t, d, ref, name, n, lesson)
	c.waitReady(t, 4*time.Minute)

	mgmt := net.JoinHostPort(n.eth0.String(), "22")
	got := qemulaunchtest.SSH(t, "", mgmt, "antidote", "antidotepassword", "hostname; cat /antidote/lesson.txt", nil)
	if got != name+"\nfrom the lesson directory\n" {
		t.Errorf("guest said %q", got)
	}
	qemulaunchtest.SSH(t, "", mgmt, "antidote", "antidotepassword", "sudo ip addr add 192.0.2.2/24 dev eth1 && sudo ip link set eth1 up", nil)
	if out := qemulaunchtest.SSH(t, "", mgmt, "antidote", "antidotepassword", "ping -c 1 -W 10 192.0.2.1", nil); !strings.Contains(out, "1 packets received") {
		t.Errorf("ping from the guest across eth1: %q", out)
	}
	if out, err := exec.Command("ip", "netns", "exec", n.peer1, "ping", "-c", "1", "-W", "10", "192.0.2.2").CombinedOutput(); err != nil {
		t.Errorf("ping from the peer across eth1: %v\n%s", err, out)
	}

	t0 := time.Now()
	if out, err := d.Ctr(ctx, "default", "tasks", "kill", "--signal", "SIGTERM", name); err != nil {
		t.Fatalf("SIGTERM: %v %s", err, out)
	}
	code := c.wait(t, 3*time.Minute)
	t.Logf("SIGTERM to exit: %v", time.Since(t0).Round(time.Millisecond))
	if code != 0 || !strings.Contains(c.output(), "guest-shutdown") {
		t.Errorf("container exit %d after SIGTERM; want 0 and the guest powering itself off:\n%s", code, c.output())
	}
	d.AssertClean(t)
	if pids, _ := ektest.ProcessesMatching("qemu-system", "-name "+name); len(pids) > 0 {
		t.Errorf("QEMU left: %v", pids)
	}
}

// endpointNet is a container network namespace laid out like a lesson's:
// eth0 (eth0 addr) on a host bridge (host addr), eth1 and eth2 as veths
// into peer namespaces (192.0.2.1/24 on the eth1 peer).
type endpointNet struct {
	ns, peer1, peer2 string
	bridge           string
	host, eth0       netip.Addr
}

func newEndpointNet(t testing.TB) *endpointNet {
	t.Helper()
	// Registered first, so it runs last: after the namespaces (and with
	// them the veths) are gone.
	t.Cleanup(func() { ektest.AssertClean(t, "ektb") })
	n := &endpointNet{ns: ektest.NetNS(t), peer1: ektest.NetNS(t), peer2: ektest.NetNS(t), bridge: ektest.Name("ektb")}
	var r [2]byte
	rand.Read(r[:])
	// A random /24 in 198.18.0.0/15 (the benchmarking range, never routed).
	n.host = netip.AddrFrom4([4]byte{198, 18 + r[0]&1, r[1], 1})
	n.eth0 = netip.AddrFrom4([4]byte{198, 18 + r[0]&1, r[1], 2})
	br := &netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.bridge}}
	must(t, netlink.LinkAdd(br))
	hostEnd := ektest.Name("ektb")
	t.Cleanup(func() {
		// The kernel removes a deleted namespace's veths later, in the
		// background: delete the host end now.
		for _, name := range []string{hostEnd, n.bridge} {
			if l, err := netlink.LinkByName(name); err == nil {
				netlink.LinkDel(l)
			}
		}
	})
	must(t, netlink.AddrAdd(br, &netlink.Addr{IPNet: &net.IPNet{IP: n.host.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	must(t, netlink.LinkSetUp(br))
	ns, err := nsutil.Open(n.ns)
	must(t, err)
	defer ns.Close()
	must(t, netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: hostEnd, MasterIndex: br.Index}, PeerName: "eth0", PeerNamespace: netlink.NsFd(int(ns))}))
	he, err := netlink.LinkByName(hostEnd)
	must(t, err)
	must(t, netlink.LinkSetUp(he))
	h, err := nsutil.Handle(n.ns)
	must(t, err)
	defer h.Close()
	e0, err := h.LinkByName("eth0")
	must(t, err)
	must(t, h.AddrAdd(e0, &netlink.Addr{IPNet: &net.IPNet{IP: n.eth0.AsSlice(), Mask: net.CIDRMask(24, 32)}}))
	must(t, h.LinkSetUp(e0))
	lo, _ := h.LinkByName("lo")
	must(t, h.LinkSetUp(lo))
	qemulaunchtest.VethPair(t, n.ns, "eth1", n.peer1, "p1")
	qemulaunchtest.VethPair(t, n.ns, "eth2", n.peer2, "p2")
	ph, err := nsutil.Handle(n.peer1)
	must(t, err)
	defer ph.Close()
	p1, _ := ph.LinkByName("p1")
	must(t, ph.AddrAdd(p1, &netlink.Addr{IPNet: &net.IPNet{IP: net.IPv4(192, 0, 2, 1), Mask: net.CIDRMask(24, 32)}}))
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// container is `ctr run` of an endpoint image in the foreground.
type container struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  strings.Builder
	done chan struct{}
	err  error
}

func (c *container) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// startContainer runs ref as container id in the network namespace of n,
// with the lesson directory bind-mounted at /antidote. The container is
// privileged, as vrnetlab's and Antidote's VM endpoints are (TAPs, tc,
// /dev/net/tun).
func startContainer(t testing.TB, d *containerdtest.Daemon, ref, id string, n *endpointNet, lesson string) *container {
	c := &container{done: make(chan struct{})}
	c.cmd = d.CtrCmd(context.Background(), "default", "run", "--rm", "--privileged",
		"--with-ns", "network:"+nsutil.Path(n.ns),
		"--mount", "type=bind,src="+lesson+",dst=/antidote,options=rbind:ro",
		"--env", "ENDPOINT_LESSON=/antidote", "--env", "ENDPOINT_NAME="+id, "--env", "ENDPOINTKIT_ACCEL=tcg",
		"--env", "ENDPOINT_GRACE=30s",
		ref, id)
	pr, pw := io.Pipe()
	c.cmd.Stdout, c.cmd.Stderr = pw, pw
	if err := c.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			c.mu.Lock()
			c.out.WriteString(sc.Text() + "\n")
			c.mu.Unlock()
		}
	}()
	go func() { c.err = c.cmd.Wait(); pw.Close(); close(c.done) }()
	t.Cleanup(func() {
		select {
		case <-c.done:
		default:
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			d.Ctr(ctx, "default", "tasks", "kill", "--signal", "SIGKILL", id)
			<-c.done
		}
	})
	return c
}

func (c *container) waitReady(t testing.TB, limit time.Duration) time.Duration {
	t.Helper()
	t0 := time.Now()
	for !strings.Contains(c.output(), ": ready in ") {
		select {
		case <-c.done:
			t.Fatalf("container exited (%v) before ready:\n%s", c.err, c.output())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Since(t0) > limit {
			t.Fatalf("container not ready after %v:\n%s", limit, c.output())
		}
	}
	return time.Since(t0)
}

func (c *container) wait(t testing.TB, limit time.Duration) int {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(limit):
		t.Fatalf("container still running after %v:\n%s", limit, c.output())
	}
	if ee, ok := c.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if c.err != nil {
		t.Fatal(c.err)
	}
	return 0
}

// TestOCIReproducible builds the tiny endpoint's OCI image twice, each
// from an empty cache (packages resolved, downloaded, extracted and
// selected again; the launcher built and every layer written again), and
// compares the digests.
func TestOCIReproducible(t *testing.T) {
	ektest.RequireQEMU(t)
	ektest.RequireTool(t, "apt-get", "dpkg-deb", "go")
	im := imagetest.Tiny(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	var digests []string
	var layers [][]imagebuild.OCILayer
	for i := 0; i < 2; i++ {
		cp := imageCopy(t, im)
		b := imagebuild.New(imagebuild.Options{CacheDir: t.TempDir(), GoDir: ektest.RepoRoot(t)})
		res, err := b.BuildOCI(ctx, cp, imagebuild.OCIOptions{SkipBootCheck: true})
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range res.Layers {
			if l.Cached {
				t.Fatalf("build %d: layer %s came from a cache that should be empty", i, l.Name)
			}
		}
		digests = append(digests, res.Digest)
		layers = append(layers, res.Layers)
		t.Logf("build %d from an empty cache: %s in %v", i, res.Digest, res.Elapsed.Round(time.Millisecond))
	}
	if digests[0] != digests[1] {
		t.Errorf("two builds from empty caches differ: %s and %s\n%+v\n%+v", digests[0], digests[1], layers[0], layers[1])
	}
}

// TestDockerfileMatchesOCIConfig: the generated Dockerfile (the documented
// docker build equivalent) and the OCI image's config name the same
// entrypoint, environment, labels and exposed ports.
func TestDockerfileMatchesOCIConfig(t *testing.T) {
	im, _ := tinyOCI(t)
	if err := imagebuild.WriteContainerFiles(im.Dir, ""); err != nil {
		t.Fatal(err)
	}
	df, err := os.ReadFile(filepath.Join(im.Dir, imagebuild.DockerfileFile))
	if err != nil {
		t.Fatal(err)
	}
	got := parseDockerfile(t, string(df))
	img, _, err := imagebuild.LoadOCI(im.Dir)
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for p := range cf.Config.ExposedPorts {
		ports = append(ports, p)
	}
	sort.Strings(ports)
	want := dockerfileSpec{Entrypoint: cf.Config.Entrypoint, Env: cf.Config.Env, Labels: cf.Config.Labels, Ports: ports}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Dockerfile:\n%+v\nOCI config:\n%+v", got, want)
	}
	if len(want.Labels) < 8 || want.Labels["org.opencontainers.image.title"] != "tiny" {
		t.Errorf("too few labels: %v", want.Labels)
	}
	mk, _ := os.ReadFile(filepath.Join(im.Dir, imagebuild.MakefileFile))
	for _, s := range []string{"$(IMAGEBUILD) build -o $(CURDIR) $(RECIPE)", "$(IMAGEBUILD) push $(PUSH_FLAGS) $(CURDIR) $(IMAGE):$(TAG)"} {
		if !strings.Contains(string(mk), s) {
			t.Errorf("Makefile lacks %q", s)
		}
	}
}

type dockerfileSpec struct {
	Entrypoint []string
	Env        []string
	Labels     map[string]string
	Ports      []string
}

// parseDockerfile reads the ENV, LABEL, EXPOSE and ENTRYPOINT instructions
// imagebuild writes (one key="value" per ENV/LABEL line).
func parseDockerfile(t *testing.T, src string) dockerfileSpec {
	t.Helper()
	s := dockerfileSpec{Labels: map[string]string{}}
	for _, line := range strings.Split(src, "\n") {
		instr, rest, _ := strings.Cut(line, " ")
		switch instr {
		case "ENV", "LABEL":
			k, v, ok := strings.Cut(rest, "=")
			uq, err := strconv.Unquote(strings.ReplaceAll(v, `\$`, `$`))
			if !ok || err != nil {
				t.Fatalf("Dockerfile line %q: %v", line, err)
			}
			if instr == "ENV" {
				s.Env = append(s.Env, k+"="+uq)
			} else {
				s.Labels[k] = uq
			}
		case "EXPOSE":
			s.Ports = append(s.Ports, strings.Fields(rest)...)
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &s.Entrypoint); err != nil {
				t.Fatalf("ENTRYPOINT %q: %v", rest, err)
			}
		}
	}
	sort.Strings(s.Ports)
	return s
}
