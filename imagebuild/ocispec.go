package imagebuild

import (
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// Where things live in an endpoint container.
const (
	// ContainerImageDir is the image directory inside the container.
	ContainerImageDir = "/image"
	// ContainerEndpoint is the launcher binary inside the container.
	ContainerEndpoint = "/usr/local/bin/endpoint"
	// ContainerPath is the container's PATH.
	ContainerPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

// Label keys of endpoint images besides org.opencontainers.image.*: a
// platform reads the endpoint's ports, APIs and users from the image
// config without pulling a layer.
const (
	LabelPrefix      = "io.endpointkit."
	LabelSlug        = LabelPrefix + "slug"
	LabelKind        = LabelPrefix + "kind"
	LabelPorts       = LabelPrefix + "ports"       // exposed ports, "22/tcp,830/tcp"
	LabelAPISSH      = LabelPrefix + "api.ssh"     // guest port of SSH
	LabelAPINETCONF  = LabelPrefix + "api.netconf" // guest port of NETCONF
	LabelAPIHTTP     = LabelPrefix + "api.http"    // guest ports of HTTP APIs, comma separated
	LabelSSHUser     = LabelPrefix + "users.ssh"
	LabelSSHPassword = LabelPrefix + "users.ssh-password"
	LabelConfigUser  = LabelPrefix + "users.config"
	LabelConfigPass  = LabelPrefix + "users.config-password"
	LabelInterfaces  = LabelPrefix + "interfaces" // guest data NIC names, comma separated
)

// ContainerSpec is what an endpoint container runs and declares: the same
// for the OCI image imagebuild assembles and the Dockerfile it writes.
type ContainerSpec struct {
	Entrypoint   []string
	Env          []string
	ExposedPorts []string // "22/tcp"
	Labels       map[string]string
}

// SpecFor derives the container spec of an image from its manifest.
// Credentials travel in labels as in image.meta.yaml: they are the lab
// accounts of a public image, not secrets.
func SpecFor(m *vmimage.Manifest) ContainerSpec {
	s := ContainerSpec{
		Entrypoint: []string{ContainerEndpoint, "run", "--image", ContainerImageDir},
		Env:        []string{"PATH=" + ContainerPath},
		Labels:     map[string]string{},
	}
	for _, p := range containerPorts(m) {
		s.ExposedPorts = append(s.ExposedPorts, strconv.Itoa(p)+"/tcp")
	}
	set := func(k, v string) {
		if v != "" && v != "0" {
			s.Labels[k] = v
		}
	}
	desc := m.Description
	if desc == "" {
		desc = m.Slug + " endpoint image built by endpointkit"
	}
	set("org.opencontainers.image.title", m.Slug)
	set("org.opencontainers.image.description", desc)
	if len(m.BuildKey) >= 12 {
		set("org.opencontainers.image.version", m.BuildKey[:12])
	}
	set(LabelSlug, m.Slug)
	set(LabelKind, string(m.Kind))
	set(LabelPorts, strings.Join(s.ExposedPorts, ","))
	set(LabelAPISSH, strconv.Itoa(m.APIs.SSH))
	set(LabelAPINETCONF, strconv.Itoa(m.APIs.NETCONF))
	var http []string
	for _, p := range m.APIs.HTTP {
		http = append(http, strconv.Itoa(p))
	}
	set(LabelAPIHTTP, strings.Join(http, ","))
	set(LabelSSHUser, m.Users.SSHUser)
	set(LabelSSHPassword, m.Users.SSHPassword)
	set(LabelConfigUser, m.Users.ConfigUser)
	set(LabelConfigPass, m.Users.ConfigPassword)
	set(LabelInterfaces, strings.Join(m.NetworkInterfaces, ","))
	return s
}

// containerPorts are the guest ports a container exposes: the APIs and the
// readiness TCP ports, sorted.
func containerPorts(m *vmimage.Manifest) []int {
	seen := map[int]bool{}
	var ports []int
	for _, p := range append(append([]int{m.APIs.SSH, m.APIs.NETCONF}, m.APIs.HTTP...), m.Readiness.TCPPorts...) {
		if p > 0 && !seen[p] {
			seen[p] = true
			ports = append(ports, p)
		}
	}
	sort.Ints(ports)
	return ports
}

// dockerQuote quotes s as a Dockerfile double-quoted string.
func dockerQuote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "$", `\$`)
	return `"` + r.Replace(s) + `"`
}

// dockerfileLines renders the spec as Dockerfile instructions.
func (s ContainerSpec) dockerfileLines() []string {
	var lines []string
	for _, e := range s.Env {
		k, v, _ := strings.Cut(e, "=")
		lines = append(lines, "ENV "+k+"="+dockerQuote(v))
	}
	keys := make([]string, 0, len(s.Labels))
	for k := range s.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		lines = append(lines, "LABEL "+k+"="+dockerQuote(s.Labels[k]))
	}
	if len(s.ExposedPorts) > 0 {
		lines = append(lines, "EXPOSE "+strings.Join(s.ExposedPorts, " "))
	}
	ep, _ := json.Marshal(s.Entrypoint)
	lines = append(lines, "ENTRYPOINT "+string(ep))
	return lines
}
