package kubeplan

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/yaml"
)

func renderTriangle(t *testing.T, o Options) (*endpoint.Model, *Objects) {
	t.Helper()
	m, p := loadLesson(t, "linux-triangle", "tri1")
	if o.Images == nil {
		o.Images = testImages(m)
	}
	objs, err := Render(m, p, o)
	if err != nil {
		t.Fatal(err)
	}
	return m, objs
}

func TestRenderLinuxTriangle(t *testing.T) {
	_, objs := renderTriangle(t, Options{Stage: 1, LessonImage: "127.0.0.1:5000/endpointkit/lesson-linux-triangle" + digest("b")})

	ns := objs.Namespace
	if ns.Name != "ek-tri1" {
		t.Errorf("namespace %q", ns.Name)
	}
	for k, v := range map[string]string{LabelLesson: "linux-triangle", LabelInstance: "tri1", LabelStage: "1", LabelManagedBy: "endpointkit"} {
		if ns.Labels[k] != v {
			t.Errorf("namespace label %s = %q, want %q", k, ns.Labels[k], v)
		}
	}
	if len(objs.Pods) != 3 || len(objs.Networks) != 3 || len(objs.Services) != 3 {
		t.Fatalf("%d pods, %d networks, %d services; want 3 of each", len(objs.Pods), len(objs.Networks), len(objs.Services))
	}

	// r1 is on link 0 (to r2, eth1) and link 2 (to r3, eth2) and gets the
	// .2 addresses the wiring plan gives it.
	r1 := objs.Pods[0]
	var sel []networkSelection
	if err := json.Unmarshal([]byte(r1.Annotations[NetworksAnnotation]), &sel); err != nil {
		t.Fatalf("networks annotation %q: %v", r1.Annotations[NetworksAnnotation], err)
	}
	want := []networkSelection{
		{Name: "link0-r1-r2", Interface: "eth1", IPs: []string{"10.12.0.2/24"}},
		{Name: "link2-r1-r3", Interface: "eth2", IPs: []string{"10.13.0.2/24"}},
	}
	if !reflect.DeepEqual(sel, want) {
		t.Errorf("r1 networks = %+v, want %+v", sel, want)
	}

	c := r1.Spec.Containers[0]
	if c.Image != "127.0.0.1:5000/endpointkit/tiny"+digest("a") {
		t.Errorf("image %q", c.Image)
	}
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Error("endpoint container not privileged by default")
	}
	env := map[string]string{}
	for _, e := range c.Env {
		env[e.Name] = e.Value
	}
	if env["ENDPOINT_NAME"] != "r1" || env["ENDPOINT_FORWARD"] != "22,830" || env["ENDPOINT_INTERFACES"] != "2" || env["ENDPOINT_LESSON"] != LessonDir {
		t.Errorf("launcher environment %v", env)
	}
	if !strings.HasPrefix(env["ENDPOINT_MACS"], "eth0=") || strings.Count(env["ENDPOINT_MACS"], "=") != 3 {
		t.Errorf("ENDPOINT_MACS = %q, want eth0, eth1, eth2", env["ENDPOINT_MACS"])
	}
	if p := c.ReadinessProbe; p == nil || p.Exec == nil || strings.Join(p.Exec.Command, " ") != LauncherPath+" health" {
		t.Errorf("readiness probe %+v", c.ReadinessProbe)
	}
	if got := c.Resources.Requests.Memory().Value() >> 20; got != 256+overheadMemoryMiB {
		t.Errorf("memory request %d MiB", got)
	}
	if len(r1.Spec.InitContainers) != 1 || r1.Spec.InitContainers[0].Image != "127.0.0.1:5000/endpointkit/lesson-linux-triangle"+digest("b") {
		t.Errorf("lesson init container %+v", r1.Spec.InitContainers)
	}
	for _, v := range r1.Spec.Volumes {
		if v.HostPath != nil {
			t.Errorf("volume %s is a hostPath", v.Name)
		}
	}
	if r1.Spec.NodeName != "" || r1.Spec.Affinity == nil || r1.Spec.Affinity.PodAffinity == nil {
		t.Errorf("pods not co-located by affinity: nodeName %q affinity %+v", r1.Spec.NodeName, r1.Spec.Affinity)
	} else if term := r1.Spec.Affinity.PodAffinity.RequiredDuringSchedulingIgnoredDuringExecution[0]; term.LabelSelector.MatchLabels[LabelInstance] != "tri1" || term.TopologyKey != corev1.LabelHostname {
		t.Errorf("affinity term %+v", term)
	}
	if r1.Spec.ServiceAccountName != ServiceAccountName || *r1.Spec.AutomountServiceAccountToken {
		t.Error("pods must name the instance's service account and not mount its token")
	}

	// Networks: bridge CNI, static IPAM taking the planned addresses,
	// bridge names within 15 bytes and distinct.
	bridges := map[string]bool{}
	for i, n := range objs.Networks {
		cfg := nadConfig(t, n)
		if cfg.Type != "bridge" || len(cfg.Bridge) > 15 || bridges[cfg.Bridge] {
			t.Errorf("network %d: %+v", i, cfg)
		}
		bridges[cfg.Bridge] = true
		if cfg.IPAM == nil || cfg.IPAM.Type != "static" || !cfg.Capabilities["ips"] {
			t.Errorf("network %d: IPAM %+v, capabilities %v", i, cfg.IPAM, cfg.Capabilities)
		}
	}

	if s := objs.Services[0]; s.Name != "r1-cli" || s.Spec.Ports[0].Port != 22 || s.Spec.Selector[LabelEndpoint] != "r1" {
		t.Errorf("service %+v", s)
	}
	if pol := objs.Policy; len(pol.Spec.PolicyTypes) != 2 || len(pol.Spec.Egress) != 2 {
		t.Errorf("policy %+v", pol.Spec)
	}
}

func nadConfig(t *testing.T, n *unstructured.Unstructured) cniNetwork {
	t.Helper()
	raw, _, _ := unstructured.NestedString(n.Object, "spec", "config")
	var cfg cniNetwork
	if err := json.Unmarshal([]byte(raw), &cfg); err != nil {
		t.Fatalf("NAD %s config %q: %v", n.GetName(), raw, err)
	}
	return cfg
}

func TestRenderPinnedMinimal(t *testing.T) {
	_, objs := renderTriangle(t, Options{Node: "node1", Security: SecurityMinimal, KVMResource: "devices.kubevirt.io/kvm"})
	p := objs.Pods[1]
	if p.Spec.NodeName != "node1" || p.Spec.Affinity != nil {
		t.Errorf("pinned pod: nodeName %q affinity %v", p.Spec.NodeName, p.Spec.Affinity)
	}
	sc := p.Spec.Containers[0].SecurityContext
	if sc.Privileged != nil || len(sc.Capabilities.Add) != 1 || sc.Capabilities.Add[0] != "NET_ADMIN" {
		t.Errorf("minimal security context %+v", sc)
	}
	if len(p.Spec.Volumes) != 1 || p.Spec.Volumes[0].HostPath == nil || p.Spec.Volumes[0].HostPath.Path != "/dev/net/tun" {
		t.Errorf("volumes %+v, want only /dev/net/tun", p.Spec.Volumes)
	}
	if len(p.Spec.InitContainers) != 0 {
		t.Error("a lesson init container without a lesson image")
	}
	if q := p.Spec.Containers[0].Resources.Limits["devices.kubevirt.io/kvm"]; q.Value() != 1 {
		t.Errorf("KVM resource limit %v", p.Spec.Containers[0].Resources.Limits)
	}
}

func TestBridgeNames(t *testing.T) {
	a, b := BridgeName("lab1", 3, -1), BridgeName("lab2", 3, -1)
	if a == b {
		t.Errorf("two instances share bridge %s", a)
	}
	if n := BridgeName(strings.Repeat("x", 40), 9999, -1); len(n) > 15 {
		t.Errorf("bridge name %q longer than 15", n)
	}
	if s, l := BridgeName("lab1", 0, 0), BridgeName("lab1", 0, -1); s == l {
		t.Errorf("segment and link bridges collide: %s", s)
	}
}

// A connection without a subnet is plain L2: no IPAM, no address asked for.
func TestRenderNoSubnet(t *testing.T) {
	m := &endpoint.Model{Lesson: "l2", Endpoints: []endpoint.Endpoint{
		{Name: "a", Image: "img", Interfaces: []endpoint.Interface{{Name: "eth1", Link: 0, MTU: 9000}}},
		{Name: "b", Image: "img", Index: 1, Interfaces: []endpoint.Interface{{Name: "eth1", Link: 0, MTU: 9000}}},
	}, Links: []endpoint.Link{{A: endpoint.LinkEnd{Endpoint: "a", Interface: "eth1"}, B: endpoint.LinkEnd{Endpoint: "b", Interface: "eth1"},
		Subnet: netip.MustParsePrefix("10.0.0.0/24"), MTU: 9000}}}
	p, err := wiring.NewPlan(m, wiring.Options{Instance: "l2"})
	if err != nil {
		t.Fatal(err)
	}
	objs, err := Render(m, p, Options{Images: map[string]Image{"img": {Ref: "r/img" + digest("c")}}})
	if err != nil {
		t.Fatal(err)
	}
	cfg := nadConfig(t, objs.Networks[0])
	if cfg.IPAM != nil || cfg.Capabilities != nil || cfg.MTU != 9000 {
		t.Errorf("config %+v: want no IPAM, MTU 9000", cfg)
	}
	if a := objs.Pods[0].Annotations[NetworksAnnotation]; a != `[{"name":"link0-a-b","interface":"eth1"}]` {
		t.Errorf("annotation %s", a)
	}
	if len(objs.Services) != 0 {
		t.Errorf("services without presentations: %d", len(objs.Services))
	}
}

func TestRenderErrors(t *testing.T) {
	m, p := loadLesson(t, "linux-triangle", "tri1")
	good := testImages(m)
	for _, tc := range []struct {
		name string
		o    Options
		want error
		says string
	}{
		{"no image", Options{}, ErrImage, `endpoint "r1": image "tiny"`},
		{"by tag", Options{Images: map[string]Image{"tiny": {Ref: "r/tiny:latest"}}}, ErrImage, `"r/tiny:latest", not a reference by digest`},
		{"lesson by tag", Options{Images: good, LessonImage: "r/lesson:1"}, ErrImage, "lesson image"},
		{"security", Options{Images: good, Security: "root"}, ErrInvalid, "Options.Security"},
		{"lesson too large", Options{Images: good, LessonFiles: []LessonFile{{Path: "big", Data: make([]byte, MaxLessonFiles+1)}}}, ErrInvalid, "lesson-content image"},
		{"lesson path leaves", Options{Images: good, LessonFiles: []LessonFile{{Path: "../x"}}}, ErrInvalid, `lesson file "../x"`},
		{"lesson path absolute", Options{Images: good, LessonFiles: []LessonFile{{Path: "/etc/x"}}}, ErrInvalid, `lesson file "/etc/x"`},
		{"lesson path twice", Options{Images: good, LessonFiles: []LessonFile{{Path: "a"}, {Path: "a"}}}, ErrInvalid, "given twice"},
	} {
		_, err := Render(m, p, tc.o)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.says) {
			t.Errorf("%s: err = %v, want %v saying %q", tc.name, err, tc.want, tc.says)
		}
	}
	// Endpoints on two hosts make VXLAN links: not one node.
	pv, err := wiring.NewPlan(m, wiring.Options{Instance: "tri1", Placement: map[string]string{"r1": "h1"},
		Underlay: map[string]netip.Addr{"h1": netip.MustParseAddr("192.0.2.1"), "": netip.MustParseAddr("192.0.2.2")}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Render(m, pv, Options{Images: good}); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "vxlan") {
		t.Errorf("VXLAN plan: err = %v", err)
	}
}

func TestServiceName(t *testing.T) {
	for in, want := range map[[2]string]string{
		{"r1", "cli"}:                    "r1-cli",
		{"1r", "Web UI"}:                 "p-1r-web-ui",
		{"vqfx", "__"}:                   "vqfx",
		{strings.Repeat("a", 60), "cli"}: "",
	} {
		got := serviceName(in[0], in[1])
		if want != "" && got != want {
			t.Errorf("serviceName(%q, %q) = %q, want %q", in[0], in[1], got, want)
		}
		if len(got) > 63 {
			t.Errorf("serviceName(%q, %q) = %q: longer than 63", in[0], in[1], got)
		}
	}
}

// The YAML stream is what `kubectl apply -f` reads: one document per
// object, in creation order, without server-set fields.
func TestWriteYAML(t *testing.T) {
	_, objs := renderTriangle(t, Options{})
	var b bytes.Buffer
	if err := objs.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(strings.TrimPrefix(b.String(), "---\n"), "---\n")
	if len(docs) != 1+1+3+3+1+3 {
		t.Fatalf("%d documents", len(docs))
	}
	var kinds []string
	for _, d := range docs {
		var u unstructured.Unstructured
		if err := yaml.Unmarshal([]byte(d), &u.Object); err != nil {
			t.Fatalf("document %q: %v", d, err)
		}
		kinds = append(kinds, u.GetKind())
	}
	if kinds[0] != "Namespace" || kinds[len(kinds)-1] != "Pod" {
		t.Errorf("order %v: namespace first, pods last", kinds)
	}
	for _, bad := range []string{"status:", "creationTimestamp"} {
		if strings.Contains(b.String(), bad) {
			t.Errorf("YAML holds %q", bad)
		}
	}
}

// TestRenderIdentity: pods of an image that takes a per-instance identity
// mount their endpoint's identity Secret read-only and tell the launcher
// the file (ENDPOINT_IDENTITY); the Secret holds exactly the identity
// given, is created before the pods, and is rendered only when given (no
// private key is made up, so a bare render has no Secret). Pods of other
// images get neither.
func TestRenderIdentity(t *testing.T) {
	m, _ := loadLesson(t, "linux-triangle", "tri1")
	imgs := testImages(m)
	for slug, im := range imgs {
		im.Identity = true
		imgs[slug] = im
	}
	given := map[string][]byte{"r1": []byte(`{"hostname":"r1"}`), "r2": []byte(`{"hostname":"r2"}`)}
	_, objs := renderTriangle(t, Options{Images: imgs, Identities: given})
	if len(objs.Secrets) != 2 {
		t.Fatalf("%d secrets; want r1's and r2's (r3 has no identity given)", len(objs.Secrets))
	}
	for i, sec := range objs.Secrets {
		ep := []string{"r1", "r2"}[i]
		if sec.Name != IdentitySecret(ep) || sec.Namespace != "ek-tri1" || sec.Labels[LabelEndpoint] != ep || sec.Type != corev1.SecretTypeOpaque ||
			len(sec.Data) != 1 || !bytes.Equal(sec.Data[vmimage.IdentityFile], given[ep]) {
			t.Errorf("secret %d = %+v; want %s's identity as %s", i, sec, ep, vmimage.IdentityFile)
		}
	}
	for _, pod := range objs.Pods {
		c := pod.Spec.Containers[0]
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["ENDPOINT_IDENTITY"] != IdentityDir+"/"+vmimage.IdentityFile {
			t.Errorf("%s: ENDPOINT_IDENTITY = %q", pod.Name, env["ENDPOINT_IDENTITY"])
		}
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Secret != nil {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil || vol.Secret.SecretName != IdentitySecret(pod.Name) || vol.Secret.DefaultMode == nil || *vol.Secret.DefaultMode != 0o400 {
			t.Fatalf("%s: secret volume %+v; want %s, mode 0400", pod.Name, vol, IdentitySecret(pod.Name))
		}
		mounted := false
		for _, vm := range c.VolumeMounts {
			mounted = mounted || vm.Name == vol.Name && vm.MountPath == IdentityDir && vm.ReadOnly
		}
		if !mounted {
			t.Errorf("%s: mounts %+v; want the identity read-only at %s", pod.Name, c.VolumeMounts, IdentityDir)
		}
	}
	waves, err := objs.Waves()
	if err != nil {
		t.Fatal(err)
	}
	secrets := 0
	for _, u := range waves[1] {
		if u.GetKind() == "Secret" {
			secrets++
		}
	}
	if secrets != 2 {
		t.Errorf("%d secrets in the wave before the pods; want 2", secrets)
	}

	var bare bytes.Buffer
	_, objs = renderTriangle(t, Options{Images: imgs})
	if err := objs.WriteYAML(&bare); err != nil {
		t.Fatal(err)
	}
	if len(objs.Secrets) != 0 || strings.Contains(bare.String(), "kind: Secret") || !strings.Contains(bare.String(), "secretName: r3-identity") {
		t.Errorf("render without identities: %d secrets; want none, the pods still mounting theirs:\n%s", len(objs.Secrets), bare.String())
	}
	_, objs = renderTriangle(t, Options{Identities: given})
	for _, pod := range objs.Pods {
		if len(objs.Secrets) != 0 || len(pod.Spec.Volumes) != 0 || strings.Contains(fmt.Sprint(pod.Spec.Containers[0].Env), "ENDPOINT_IDENTITY") {
			t.Errorf("an image without identity: %d secrets, pod %s volumes %+v env %v", len(objs.Secrets), pod.Name, pod.Spec.Volumes, pod.Spec.Containers[0].Env)
		}
	}
}

// A small lesson directory goes in a ConfigMap: text as data, the rest as
// binaryData, each key mapped to its path and mode in every pod, created
// before the pods, no init container; a lesson-content image wins.
func TestRenderLessonConfigMap(t *testing.T) {
	files := []LessonFile{
		{Path: "lesson.meta.yaml", Data: []byte("slug: x\n")},
		{Path: "stage0/configs/r1.sh", Mode: 0o755, Data: []byte("#!/bin/sh\n")},
		{Path: "stage0/blob.bin", Mode: 0o600, Data: []byte{0xff, 0xfe, 0}},
	}
	_, objs := renderTriangle(t, Options{LessonFiles: files})
	cm := objs.Lesson
	if cm == nil || cm.Name != LessonConfigMap || cm.Namespace != "ek-tri1" {
		t.Fatalf("lesson ConfigMap %+v", cm)
	}
	if cm.Data["f000"] != "slug: x\n" || cm.Data["f001"] != "#!/bin/sh\n" || !bytes.Equal(cm.BinaryData["f002"], []byte{0xff, 0xfe, 0}) || len(cm.Data)+len(cm.BinaryData) != 3 {
		t.Errorf("data %q, binaryData %q", cm.Data, cm.BinaryData)
	}
	for _, pod := range objs.Pods {
		if len(pod.Spec.InitContainers) != 0 {
			t.Errorf("pod %s has init containers", pod.Name)
		}
		var vol *corev1.Volume
		for i := range pod.Spec.Volumes {
			if pod.Spec.Volumes[i].Name == lessonVolume {
				vol = &pod.Spec.Volumes[i]
			}
		}
		if vol == nil || vol.ConfigMap == nil || vol.ConfigMap.Name != LessonConfigMap {
			t.Fatalf("pod %s: lesson volume %+v", pod.Name, vol)
		}
		var got []string
		for _, it := range vol.ConfigMap.Items {
			got = append(got, fmt.Sprintf("%s:%s:%o", it.Key, it.Path, *it.Mode))
		}
		if want := "f000:lesson.meta.yaml:644 f001:stage0/configs/r1.sh:755 f002:stage0/blob.bin:600"; strings.Join(got, " ") != want {
			t.Errorf("pod %s: items %s, want %s", pod.Name, strings.Join(got, " "), want)
		}
		c := pod.Spec.Containers[0]
		if len(c.VolumeMounts) == 0 || c.VolumeMounts[len(c.VolumeMounts)-1].MountPath != LessonDir || !c.VolumeMounts[len(c.VolumeMounts)-1].ReadOnly {
			t.Errorf("pod %s: mounts %+v", pod.Name, c.VolumeMounts)
		}
	}
	waves, err := objs.Waves()
	if err != nil {
		t.Fatal(err)
	}
	var kinds []string
	for _, u := range waves[1] {
		kinds = append(kinds, u.GetKind())
	}
	if !slices.Contains(kinds, "ConfigMap") {
		t.Errorf("second wave %v has no ConfigMap (it must exist before the pods)", kinds)
	}

	_, objs = renderTriangle(t, Options{LessonFiles: files, LessonImage: "127.0.0.1:5000/endpointkit/lesson" + digest("b")})
	if objs.Lesson != nil || len(objs.Pods[0].Spec.InitContainers) != 1 {
		t.Errorf("with a lesson image: ConfigMap %v, init containers %d", objs.Lesson, len(objs.Pods[0].Spec.InitContainers))
	}
}
