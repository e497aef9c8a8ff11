package lessonmeta

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

var (
	slugRE      = regexp.MustCompile(`^[a-z-]*$`)
	imageSlugRE = regexp.MustCompile(`^[A-Za-z0-9-]*$`)
	dnsLabelRE  = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$`)
)

// jupyterEndpoint is the endpoint name Antidote adds for jupyter guides.
const jupyterEndpoint = "jupyterlabguide"

// checker applies the rules to one decoded file, collecting problems.
type checker struct {
	src   *source
	probs problems
	// tooBig is set when a size limit is exceeded; the file checks are
	// then skipped.
	tooBig bool
	// suggested counts "did you mean" searches over endpoint names, which
	// are capped per file.
	suggested int
}

const maxSuggestions = 20

// limit reports a list longer than max.
func (c *checker) limit(field string, n, max int, what string) {
	if n > max {
		c.tooBig = true
		c.errf(ErrInvalid, field, "%d %s; endpointkit handles at most %d", n, what, max)
	}
}

// decodeChecked decodes a small metafile into a new T and returns a checker
// holding the decoding problems; a nil checker means nothing could be
// decoded, and err says why.
func decodeChecked[T any](file string, data []byte, opts Options) (*T, *checker, error) {
	var probs problems
	raw := new(T)
	src, _, ok := decodeFile(file, data, raw, opts.Strict, &probs)
	if !ok {
		return nil, nil, probs.err()
	}
	return raw, &checker{src: src, probs: probs}, nil
}

func newChecker(raw *RawLesson) *checker {
	c := &checker{}
	if raw.meta != nil {
		c.src = raw.meta.src
		c.probs.list = slices.Clone(raw.meta.problems)
	} else {
		c.src = &source{file: LessonFile, pos: strictyaml.Positions{}}
	}
	return c
}

func (c *checker) report(sev Severity, kind error, field, format string, args ...any) {
	c.probs.add(&Problem{File: c.src.file, Pos: c.src.at(field), Field: field,
		Severity: sev, Kind: kind, Message: fmt.Sprintf(format, args...)})
}

func (c *checker) errf(kind error, field, format string, args ...any) {
	c.report(SeverityError, kind, field, format, args...)
}

func (c *checker) warnf(kind error, field, format string, args ...any) {
	c.report(SeverityWarning, kind, field, format, args...)
}

// required reports an empty value; it returns false when empty.
func (c *checker) required(field, value, what string) bool {
	if strings.TrimSpace(value) != "" {
		return true
	}
	if c.src.has(field) {
		c.errf(ErrMissing, field, "is empty; give %s", what)
	} else {
		c.errf(ErrMissing, field, "is required: give %s", what)
	}
	return false
}

// enum checks that value is one of allowed; what names the field for the
// "required" message.
func (c *checker) enum(field, value string, allowed []string, hints map[string]string) bool {
	if slices.Contains(allowed, value) {
		return true
	}
	if value == "" {
		c.required(field, value, "one of "+strings.Join(allowed, ", "))
		return false
	}
	msg := fmt.Sprintf("%q is not one of %s", value, strings.Join(allowed, ", "))
	if h, ok := hints[value]; ok {
		msg += "; " + h
	} else if s := strictyaml.Suggest(value, allowed); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	}
	c.errf(ErrInvalid, field, "%s", msg)
	return false
}

func (c *checker) port(field string, p int) {
	if p < 1 || p > 65535 {
		c.errf(ErrInvalid, field, "%d is not a port number (1-65535)", p)
	}
}

func (c *checker) lesson(raw *RawLesson) *Lesson {
	l := &Lesson{
		Slug: raw.Slug, Name: raw.Name, Category: Category(raw.Category), Tier: Tier(raw.Tier),
		Description: raw.Description, ShortDescription: raw.ShortDescription,
		Diagram: raw.Diagram, Video: raw.Video, Collection: raw.Collection,
		Prereqs: raw.Prereqs, Tags: raw.Tags,
		ReadyDelay: time.Duration(raw.ReadyDelay) * time.Second,
		File:       c.src.file,
		src:        c.src,
	}
	if abs, err := filepath.Abs(filepath.Dir(c.src.file)); err == nil {
		l.Dir = abs
	}
	c.required("name", raw.Name, "the lesson's title")
	c.required("description", raw.Description, "a description of the lesson")
	c.required("shortDescription", raw.ShortDescription, "one or two words naming the lesson")
	if c.required("slug", raw.Slug, "the lesson's ID (lower-case letters and hyphens)") && !slugRE.MatchString(raw.Slug) {
		c.errf(ErrInvalid, "slug", "%q may hold only lower-case letters and hyphens (try %q)", raw.Slug, slugify(raw.Slug))
	}
	c.enum("category", raw.Category, []string{"fundamentals", "tools", "workflows"}, nil)
	c.enum("tier", raw.Tier, []string{"prod", "ptr", "local"}, nil)
	if raw.ReadyDelay < 0 {
		c.errf(ErrInvalid, "readyDelay", "%d is negative; give seconds (0 or more)", raw.ReadyDelay)
	}
	seen := map[string]int{}
	for i, p := range raw.Prereqs {
		f := fmt.Sprintf("prereqs[%d]", i)
		switch {
		case !c.required(f, p, "a lesson slug"):
		case !slugRE.MatchString(p):
			c.errf(ErrInvalid, f, "%q is not a lesson slug (lower-case letters and hyphens)", p)
		case p == raw.Slug && p != "":
			c.errf(ErrInvalid, f, "a lesson cannot be its own prerequisite")
		}
		if j, dup := seen[p]; dup {
			c.warnf(ErrDuplicate, f, "%q is already prereqs[%d]", p, j)
		}
		seen[p] = i
	}
	for i, a := range raw.Authors {
		if strings.TrimSpace(a.Name) == "" {
			c.warnf(ErrMissing, fmt.Sprintf("authors[%d].name", i), "author without a name")
		}
		l.Authors = append(l.Authors, Author(a))
	}
	c.limit("stages", len(raw.Stages), MaxStages, "stages")
	c.limit("endpoints", len(raw.Endpoints), MaxEndpoints, "endpoints")
	c.limit("connections", len(raw.Connections), MaxConnections, "connections")
	c.stages(raw, l)
	c.endpoints(raw, l)
	c.connections(raw, l)
	return l
}

func (c *checker) stages(raw *RawLesson, l *Lesson) {
	if len(raw.Stages) == 0 {
		c.errf(ErrMissing, "stages", "a lesson needs at least one stage (stage 0 uses the directory stage0/)")
	}
	for i, s := range raw.Stages {
		c.enum(fmt.Sprintf("stages[%d].guideType", i), s.GuideType, []string{"markdown", "jupyter"}, nil)
		l.Stages = append(l.Stages, Stage{Index: i, Description: s.Description, GuideType: GuideType(s.GuideType), Video: s.StageVideo})
	}
}

func (c *checker) endpoints(raw *RawLesson, l *Lesson) {
	if len(raw.Endpoints) == 0 {
		c.errf(ErrMissing, "endpoints", "a lesson needs at least one endpoint")
	}
	jupyter := slices.ContainsFunc(l.Stages, func(s Stage) bool { return s.GuideType == GuideJupyter })
	names := map[string]int{}
	for i, e := range raw.Endpoints {
		f := fmt.Sprintf("endpoints[%d]", i)
		if c.required(f+".name", e.Name, "the endpoint's name (a DNS label such as vqfx1)") {
			switch {
			case !dnsLabelRE.MatchString(e.Name):
				c.errf(ErrInvalid, f+".name", "%q is not a DNS label (lower-case letters, digits and inner hyphens, at most 63); it becomes a host name", e.Name)
			case jupyter && e.Name == jupyterEndpoint:
				c.errf(ErrInvalid, f+".name", "%q is reserved for the jupyter guide of this lesson's jupyter stages; rename the endpoint", e.Name)
			}
			if j, dup := names[e.Name]; dup {
				c.errf(ErrDuplicate, f+".name", "endpoint name %q is already used by endpoints[%d] (line %d); names must be unique", e.Name, j, c.src.at(fmt.Sprintf("endpoints[%d].name", j)).Line)
			} else {
				names[e.Name] = i
			}
		}
		if c.required(f+".image", e.Image, "an image slug such as utility") && !imageSlugRE.MatchString(e.Image) {
			msg := fmt.Sprintf("%q is not an image slug (letters, digits and hyphens)", e.Image)
			if strings.ContainsAny(e.Image, "/:") {
				msg += fmt.Sprintf("; give the slug of images/<slug>/, not a container reference (try %q)", imageFromRef(e.Image))
			}
			c.errf(ErrInvalid, f+".image", "%s", msg)
		}
		if e.ConfigurationType != "" {
			c.enum(f+".configurationType", e.ConfigurationType, []string{"napalm", "python", "ansible", "netconf", "ssh"}, map[string]string{
				"none":            "leave configurationType out for an endpoint that is not configured",
				"napalm-junos":    "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-junos.txt",
				"napalm-eos":      "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-eos.txt",
				"napalm-ios":      "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-ios.txt",
				"napalm-iosxr":    "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-iosxr.txt",
				"napalm-nxos":     "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-nxos.txt",
				"napalm-nxos_ssh": "the driver now comes from the file name: use napalm with stage<i>/configs/<ep>-nxos_ssh.txt",
			})
		}
		ep := Endpoint{Index: i, Name: e.Name, Image: e.Image, ConfigurationType: ConfigurationType(e.ConfigurationType)}
		pnames := map[string]int{}
		for k, p := range e.Presentations {
			pf := fmt.Sprintf("%s.presentations[%d]", f, k)
			if c.required(pf+".name", p.Name, "a name such as cli") {
				if j, dup := pnames[p.Name]; dup {
					c.errf(ErrDuplicate, pf+".name", "presentation name %q is already used by presentations[%d] of this endpoint", p.Name, j)
				} else {
					pnames[p.Name] = k
				}
				if !dnsLabelRE.MatchString(p.Name) {
					c.warnf(ErrInvalid, pf+".name", "%q is not a DNS label; http presentations put it in a host name", p.Name)
				}
			}
			if c.src.has(pf+".port") || p.Port != 0 {
				c.port(pf+".port", p.Port)
			} else {
				c.errf(ErrMissing, pf+".port", "is required: give the guest port (22 for ssh)")
			}
			c.enum(pf+".type", p.Type, []string{"ssh", "http"}, map[string]string{
				"vnc": "vnc presentations were never implemented and are rejected since antidote-core v0.6",
			})
			ep.Presentations = append(ep.Presentations, Presentation{Name: p.Name, Port: p.Port, Type: PresentationType(p.Type)})
		}
		ports := map[int]int{}
		for k, p := range e.AdditionalPorts {
			pf := fmt.Sprintf("%s.additionalPorts[%d]", f, k)
			c.port(pf, p)
			if j, dup := ports[p]; dup {
				c.warnf(ErrDuplicate, pf, "port %d is already additionalPorts[%d]", p, j)
			}
			ports[p] = k
		}
		ep.AdditionalPorts = e.AdditionalPorts
		if len(e.Presentations) == 0 && len(e.AdditionalPorts) == 0 {
			c.errf(ErrMissing, f, "endpoint %q needs at least one presentation or additionalPort (readiness is checked on them)", e.Name)
		}
		l.Endpoints = append(l.Endpoints, ep)
	}
}

func (c *checker) connections(raw *RawLesson, l *Lesson) {
	var names []string
	for _, e := range l.Endpoints {
		names = append(names, e.Name)
	}
	for i, r := range raw.Connections {
		f := fmt.Sprintf("connections[%d]", i)
		okA := c.connEnd(f+".a", r.A, names)
		okB := c.connEnd(f+".b", r.B, names)
		if okA && okB && r.A == r.B {
			c.errf(ErrInvalid, f+".b", "connects %q to itself; a connection joins two different endpoints", r.A)
		}
		conn := Connection{Index: i, A: r.A, B: r.B, Subnet: netip.MustParsePrefix(DefaultSubnet)}
		if r.Subnet != "" || c.src.has(f+".subnet") {
			if p, ok := c.subnet(f+".subnet", r.Subnet); ok {
				conn.Subnet, conn.SubnetExplicit = p, true
			}
		}
		l.Connections = append(l.Connections, conn)
	}
}

func (c *checker) connEnd(field, name string, names []string) bool {
	if !c.required(field, name, "the name of an endpoint") {
		return false
	}
	if slices.Contains(names, name) {
		return true
	}
	msg := fmt.Sprintf("no endpoint is named %q", name)
	c.suggested++
	if c.suggested > maxSuggestions {
		// enough help for one file
	} else if s := strictyaml.Suggest(name, names); s != "" {
		msg += fmt.Sprintf("; did you mean %q?", s)
	} else if len(names) > 0 && len(names) <= 10 {
		msg += " (endpoints: " + strings.Join(names, ", ") + ")"
	}
	c.errf(ErrReference, field, "%s", msg)
	return false
}

// subnet parses a connection's subnet and checks that host-local style
// allocation (.1 gateway, then .2 and .3) has room for both ends.
func (c *checker) subnet(field, s string) (netip.Prefix, bool) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		c.errf(ErrInvalid, field, "%q is not a CIDR subnet (want e.g. 10.12.0.0/24)", s)
		return netip.Prefix{}, false
	}
	if m := p.Masked(); m != p {
		c.warnf(ErrInvalid, field, "%s has host bits set; using the network %s", p, m)
		p = m
	}
	hostBits := p.Addr().BitLen() - p.Bits()
	// IPv4 loses the network, gateway (.1) and broadcast addresses; IPv6
	// the network (subnet-router anycast) and gateway (::1) addresses.
	need := 2 // IPv6: /126 or shorter
	if p.Addr().Is4() {
		need = 3 // IPv4: /29 or shorter
	}
	if hostBits < need {
		c.errf(ErrInvalid, field, "%s is too small for two endpoint addresses after the gateway (.1) — use a /%d or shorter prefix",
			p, p.Addr().BitLen()-need)
		return netip.Prefix{}, false
	}
	return p, true
}

// slugify makes a lesson slug from free text: lower-case letters and single
// hyphens.
func slugify(s string) string {
	var b strings.Builder
	hyphen := false
	for _, r := range strings.ToLower(s) {
		switch {
		case r >= 'a' && r <= 'z':
			if hyphen && b.Len() > 0 {
				b.WriteByte('-')
			}
			hyphen = false
			b.WriteRune(r)
		default:
			hyphen = true
		}
	}
	return b.String()
}

// imageFromRef turns a container reference (antidotelabs/vqfx:snap1) into
// an image slug (vqfx-snap1): the last path element, with a tag other than
// "latest" appended after a hyphen, and other characters dropped.
func imageFromRef(ref string) string {
	name := ref[strings.LastIndex(ref, "/")+1:]
	name, tag, _ := strings.Cut(name, ":")
	if tag != "" && tag != "latest" {
		name += "-" + tag
	}
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-':
			b.WriteRune(r)
		case r == '_' || r == '.':
			b.WriteByte('-')
		}
	}
	return b.String()
}
