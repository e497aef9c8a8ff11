package lessonmeta

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// baseLesson is valid; every rule test breaks it in one place. Line numbers
// are referred to by the cases below.
const baseLesson = `name: Demo
slug: demo
category: fundamentals
tier: local
description: A demo lesson
shortDescription: Demo
prereqs: [other]
endpoints:
  - name: r1
    image: utility
    configurationType: python
    presentations:
      - name: cli
        port: 22
        type: ssh
  - name: r2
    image: utility
    additionalPorts: [8080]
connections:
  - a: r1
    b: r2
    subnet: 10.1.0.0/24
stages:
  - description: One
    guideType: markdown
`

func baseFS() fstest.MapFS {
	return fstest.MapFS{
		"stage0/guide.md":      {Data: []byte("# one\n")},
		"stage0/configs/r1.py": {Data: []byte("print(1)\n")},
	}
}

// load parses and validates src against fsys, as Load does.
func load(t *testing.T, src string, fsys fstest.MapFS, opts Options) (*Lesson, error) {
	t.Helper()
	raw, err := Parse("/lessons/demo/lesson.meta.yaml", []byte(src), opts)
	if raw == nil {
		return nil, err
	}
	return Validate(raw, fsys, opts)
}

func TestBaseLessonIsValid(t *testing.T) {
	l, err := load(t, baseLesson, baseFS(), Options{})
	if err != nil {
		t.Fatalf("base lesson: %v", err)
	}
	if len(l.Warnings) != 0 {
		t.Fatalf("base lesson warnings: %v", l.Warnings)
	}
	if l.Slug != "demo" || len(l.Endpoints) != 2 || len(l.Connections) != 1 || len(l.Stages) != 1 {
		t.Fatalf("unexpected lesson: %+v", l)
	}
	if got := l.Endpoints[0].Configs; len(got) != 1 || got[0].Path != "/lessons/demo/stage0/configs/r1.py" || got[0].Rel != "stage0/configs/r1.py" {
		t.Fatalf("r1 configs = %+v", got)
	}
	if l.Stages[0].Guide != "/lessons/demo/stage0/guide.md" {
		t.Fatalf("guide = %q", l.Stages[0].Guide)
	}
	if c := l.Connections[0]; !c.SubnetExplicit || c.Subnet.String() != "10.1.0.0/24" {
		t.Fatalf("connection = %+v", c)
	}
	if p := l.Position("endpoints[1].image"); p != (Position{17, 12}) {
		t.Fatalf("position of endpoints[1].image = %v", p)
	}
}

type ruleCase struct {
	name    string
	edit    func(string) string
	fs      func(fstest.MapFS)
	strict  bool
	line    int
	field   string
	kind    error
	msg     string
	warning bool // the problem is a warning and the lesson stays valid
	none    bool // no problem at all: the edit is allowed
}

func replace(old, new string) func(string) string {
	return func(s string) string {
		if !strings.Contains(s, old) {
			panic("test edit: " + old + " not in base lesson")
		}
		return strings.Replace(s, old, new, 1)
	}
}

func ruleCases() []ruleCase {
	return []ruleCase{
		{name: "slug pattern", edit: replace("slug: demo", "slug: Demo_1"), line: 2, field: "slug", kind: ErrInvalid, msg: `"Demo_1" may hold only lower-case letters and hyphens (try "demo")`},
		{name: "slug missing", edit: replace("slug: demo\n", ""), line: 1, field: "slug", kind: ErrMissing, msg: "is required"},
		{name: "name empty", edit: replace("name: Demo", `name: ""`), line: 1, field: "name", kind: ErrMissing, msg: "is empty"},
		{name: "description missing", edit: replace("description: A demo lesson\n", ""), line: 1, field: "description", kind: ErrMissing, msg: "is required"},
		{name: "shortDescription missing", edit: replace("shortDescription: Demo\n", ""), line: 1, field: "shortDescription", kind: ErrMissing, msg: "is required"},
		{name: "category enum", edit: replace("category: fundamentals", "category: fundamental"), line: 3, field: "category", kind: ErrInvalid, msg: `did you mean "fundamentals"?`},
		{name: "tier enum", edit: replace("tier: local", "tier: dev"), line: 4, field: "tier", kind: ErrInvalid, msg: `"dev" is not one of prod, ptr, local`},
		{name: "readyDelay negative", edit: replace("tier: local", "tier: local\nreadyDelay: -5"), line: 5, field: "readyDelay", kind: ErrInvalid, msg: "negative"},
		{name: "prereq self", edit: replace("prereqs: [other]", "prereqs: [demo]"), line: 7, field: "prereqs[0]", kind: ErrInvalid, msg: "its own prerequisite"},
		{name: "prereq pattern", edit: replace("prereqs: [other]", "prereqs: [13]"), line: 7, field: "prereqs[0]", kind: ErrInvalid, msg: "not a lesson slug"},
		{name: "no endpoints", edit: func(s string) string {
			return s[:strings.Index(s, "endpoints:")] + "endpoints: []\nstages:\n  - guideType: markdown\n"
		}, line: 8, field: "endpoints", kind: ErrMissing, msg: "at least one endpoint"},
		{name: "no stages", edit: replace("stages:\n  - description: One\n    guideType: markdown\n", "stages: []\n"), line: 23, field: "stages", kind: ErrMissing, msg: "at least one stage"},
		{name: "guideType enum", edit: replace("guideType: markdown", "guideType: html"), line: 25, field: "stages[0].guideType", kind: ErrInvalid, msg: `"html" is not one of markdown, jupyter`},
		{name: "guideType missing", edit: replace("    guideType: markdown\n", ""), line: 24, field: "stages[0].guideType", kind: ErrMissing, msg: "is required: give one of markdown, jupyter"},
		{name: "endpoint name not a DNS label", edit: replace("  - name: r2", "  - name: R_2"), line: 16, field: "endpoints[1].name", kind: ErrInvalid, msg: `"R_2" is not a DNS label`},
		{name: "endpoint name duplicate", edit: replace("  - name: r2", "  - name: r1"), line: 16, field: "endpoints[1].name", kind: ErrDuplicate, msg: `"r1" is already used by endpoints[0] (line 9)`},
		{name: "endpoint name missing", edit: replace("  - name: r2\n    image", "  - image"), line: 16, field: "endpoints[1].name", kind: ErrMissing, msg: "is required"},
		{name: "jupyterlabguide reserved", edit: func(s string) string {
			s = strings.Replace(s, "guideType: markdown", "guideType: jupyter", 1)
			s = strings.Replace(s, "name: r2", "name: jupyterlabguide", 1)
			return strings.Replace(s, "b: r2", "b: jupyterlabguide", 1)
		}, fs: func(m fstest.MapFS) { m["stage0/guide.ipynb"] = &fstest.MapFile{Data: []byte("{}")} }, line: 16, field: "endpoints[1].name", kind: ErrInvalid, msg: "reserved"},
		{name: "image is a container ref", edit: replace("image: utility\n    configurationType", "image: antidotelabs/utility:latest\n    configurationType"), line: 10, field: "endpoints[0].image", kind: ErrInvalid, msg: `(try "utility")`},
		{name: "image missing", edit: replace("    image: utility\n    additionalPorts", "    additionalPorts"), line: 16, field: "endpoints[1].image", kind: ErrMissing, msg: "is required"},
		{name: "configurationType enum", edit: replace("configurationType: python", "configurationType: pyhton"), line: 11, field: "endpoints[0].configurationType", kind: ErrInvalid, msg: `did you mean "python"?`},
		{name: "configurationType napalm-junos", edit: replace("configurationType: python", "configurationType: napalm-junos"), line: 11, field: "endpoints[0].configurationType", kind: ErrInvalid, msg: "<ep>-junos.txt"},
		{name: "configurationType none", edit: replace("configurationType: python", "configurationType: none"), line: 11, field: "endpoints[0].configurationType", kind: ErrInvalid, msg: "leave configurationType out"},
		{name: "presentation type", edit: replace("type: ssh", "type: vnc"), line: 15, field: "endpoints[0].presentations[0].type", kind: ErrInvalid, msg: "vnc presentations were never implemented"},
		{name: "presentation port zero", edit: replace("port: 22", "port: 0"), line: 14, field: "endpoints[0].presentations[0].port", kind: ErrInvalid, msg: "0 is not a port number (1-65535)"},
		{name: "presentation port too big", edit: replace("port: 22", "port: 70000"), line: 14, field: "endpoints[0].presentations[0].port", kind: ErrInvalid, msg: "70000 is not a port number"},
		{name: "presentation port missing", edit: replace("        port: 22\n", ""), line: 13, field: "endpoints[0].presentations[0].port", kind: ErrMissing, msg: "is required"},
		{name: "presentation port is text", edit: replace("port: 22", `port: "twenty-two"`), line: 14, field: "endpoints[0].presentations[0].port", kind: ErrType, msg: `want a whole number, got "twenty-two"`},
		{name: "presentation port with a fraction", edit: replace("port: 22", "port: 22.5"), line: 14, field: "endpoints[0].presentations[0].port", kind: ErrType, msg: "want a whole number, got the number 22.5"},
		{name: "presentation port as a whole float", edit: replace("port: 22", "port: 22.0"), none: true},
		{name: "presentation port in hex", edit: replace("port: 22", "port: 0x16"), none: true},
		{name: "presentation name duplicate", edit: replace("        type: ssh\n", "        type: ssh\n      - name: cli\n        port: 80\n        type: http\n"), line: 16, field: "endpoints[0].presentations[1].name", kind: ErrDuplicate, msg: `presentation name "cli" is already used`},
		{name: "neither presentation nor port", edit: replace("    additionalPorts: [8080]\n", ""), line: 16, field: "endpoints[1]", kind: ErrMissing, msg: "at least one presentation or additionalPort"},
		{name: "additional port out of range", edit: replace("additionalPorts: [8080]", "additionalPorts: [8080, 65536]"), line: 18, field: "endpoints[1].additionalPorts[1]", kind: ErrInvalid, msg: "65536 is not a port number"},
		{name: "connection end unknown", edit: replace("b: r2", "b: r9"), line: 21, field: "connections[0].b", kind: ErrReference, msg: `no endpoint is named "r9"`},
		{name: "connection end typo", edit: replace("b: r2", "b: rr2"), line: 21, field: "connections[0].b", kind: ErrReference, msg: `did you mean "r2"?`},
		{name: "self connection", edit: replace("b: r2", "b: r1"), line: 21, field: "connections[0].b", kind: ErrInvalid, msg: `connects "r1" to itself`},
		{name: "subnet not CIDR", edit: replace("subnet: 10.1.0.0/24", "subnet: 10.1.0.0"), line: 22, field: "connections[0].subnet", kind: ErrInvalid, msg: `"10.1.0.0" is not a CIDR subnet`},
		{name: "subnet too small", edit: replace("subnet: 10.1.0.0/24", "subnet: 10.1.0.0/30"), line: 22, field: "connections[0].subnet", kind: ErrInvalid, msg: "use a /29 or shorter prefix"},
		{name: "subnet host bits", edit: replace("subnet: 10.1.0.0/24", "subnet: 10.1.0.7/24"), line: 22, field: "connections[0].subnet", kind: ErrInvalid, msg: "using the network 10.1.0.0/24", warning: true},
		{name: "unknown key warns", edit: replace("    image: utility\n    additionalPorts", "    imgae: x\n    image: utility\n    additionalPorts"), line: 17, field: "endpoints[1].imgae", kind: ErrUnknownKey, msg: `did you mean "image"?`, warning: true},
		{name: "unknown key strict", strict: true, edit: replace("tier: local", "tier: local\ntiers: x"), line: 5, field: "tiers", kind: ErrUnknownKey, msg: `did you mean "tier"?`},
		{name: "legacy key hint", edit: replace("name: Demo", "name: Demo\nlessonVideo: x"), line: 2, field: "lessonVideo", kind: ErrUnknownKey, msg: `"lessonVideo" is now "video"`, warning: true},
		{name: "legacy format", edit: replace("name: Demo", "name: Demo\nlessonId: 12"), line: 1, kind: ErrLegacyFormat, msg: "lesson migrate"},
		{name: "duplicate key", edit: replace("tier: local", "tier: local\ntier: prod"), line: 5, field: "tier", kind: ErrDuplicate, msg: "key given twice (first at line 4); the last one is used", warning: true},
		{name: "duplicate key strict", strict: true, edit: replace("tier: local", "tier: local\ntier: dev"), line: 5, field: "tier", kind: ErrDuplicate, msg: "key given twice"},
		{name: "duplicate key: the last wins", edit: replace("tier: local", "tier: local\ntier: dev"), line: 5, field: "tier", kind: ErrInvalid, msg: `"dev" is not one of`},
		{name: "wrong type", edit: replace("prereqs: [other]", "prereqs: other"), line: 7, field: "prereqs", kind: ErrType, msg: `want a list, got "other"`},
		{name: "endpoint not a mapping", edit: replace("  - name: r2\n    image: utility\n    additionalPorts: [8080]\n", "  - r2\n"), line: 16, field: "endpoints[1]", kind: ErrType, msg: "want a mapping"},
		{name: "syntax error", edit: replace("tier: local", "tier: [local"), line: 4, kind: ErrSyntax, msg: "not valid YAML"},
		{name: "scanner error", edit: replace("description: A demo lesson", "description: A: demo"), line: 5, kind: ErrSyntax, msg: "mapping values are not allowed"},
		{name: "second document", edit: func(s string) string { return s + "---\nname: x\n" }, line: 26, kind: ErrSyntax, msg: "a second YAML document is ignored", warning: true},
		{name: "empty trailing document is fine", edit: func(s string) string { return s + "---\n" }, none: true},
		{name: "guide missing", fs: func(m fstest.MapFS) { delete(m, "stage0/guide.md") }, line: 25, field: "stages[0].guideType", kind: ErrMissingFile, msg: "stage 0's guide stage0/guide.md is missing"},
		{name: "guide of the other type", fs: func(m fstest.MapFS) {
			delete(m, "stage0/guide.md")
			m["stage0/guide.ipynb"] = &fstest.MapFile{Data: []byte("{}")}
		}, line: 25, field: "stages[0].guideType", kind: ErrMissingFile, msg: "fix guideType"},
		{name: "config missing", fs: func(m fstest.MapFS) { delete(m, "stage0/configs/r1.py") }, line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: `python configuration of "r1" needs stage0/configs/r1.py for stage 0`},
		{name: "config in a sub-directory", fs: func(m fstest.MapFS) {
			delete(m, "stage0/configs/r1.py")
			m["stage0/configs/r1/r1.py"] = &fstest.MapFile{Data: []byte("x")}
		}, line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "r1/r1.py (config files must sit directly in stage0/configs/)"},
		{name: "config name only contains the endpoint", fs: func(m fstest.MapFS) {
			delete(m, "stage0/configs/r1.py")
			m["stage0/configs/xr1.py"] = &fstest.MapFile{Data: []byte("x")}
		}, line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "needs stage0/configs/r1.py"},
		{name: "napalm config without driver", edit: replace("configurationType: python", "configurationType: napalm"), fs: func(m fstest.MapFS) {
			m["stage0/configs/r1.txt"] = &fstest.MapFile{Data: []byte("x")}
		}, line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "needs stage0/configs/r1-<driver>.txt (driver: junos, eos, iosxr, nxos, nxos_ssh, ios) for stage 0; stage0/configs/ has r1.py, r1.txt"},
		{name: "ansible config ambiguous", edit: replace("configurationType: python", "configurationType: ansible"), fs: func(m fstest.MapFS) {
			m["stage0/configs/r1.yml"] = &fstest.MapFile{Data: []byte("x")}
			m["stage0/configs/r1.yaml"] = &fstest.MapFile{Data: []byte("x")}
		}, line: 11, field: "endpoints[0].configurationType", kind: ErrAmbiguous, msg: "stage0/configs/r1.yml, stage0/configs/r1.yaml"},
		{name: "ssh config missing", edit: replace("configurationType: python", "configurationType: ssh"), line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "needs stage0/configs/r1.sh"},
		{name: "netconf config missing", edit: replace("configurationType: python", "configurationType: netconf"), line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "needs stage0/configs/r1.xml"},
		{name: "config missing in the second stage only", edit: replace("    guideType: markdown\n", "    guideType: markdown\n  - guideType: markdown\n"), fs: func(m fstest.MapFS) {
			m["stage1/guide.md"] = &fstest.MapFile{Data: []byte("x")}
		}, line: 11, field: "endpoints[0].configurationType", kind: ErrMissingFile, msg: "for stage 1; stage1/configs/ does not exist"},
	}
}

func TestRules(t *testing.T) {
	for _, tc := range ruleCases() {
		t.Run(tc.name, func(t *testing.T) {
			src := baseLesson
			if tc.edit != nil {
				src = tc.edit(src)
			}
			fsys := baseFS()
			if tc.fs != nil {
				tc.fs(fsys)
			}
			l, err := load(t, src, fsys, Options{Strict: tc.strict})
			var probs []*Problem
			if tc.none {
				if err != nil || len(l.Warnings) > 0 {
					t.Fatalf("want no problem, got %v %v", err, l.Warnings)
				}
				return
			}
			if tc.warning {
				if err != nil {
					t.Fatalf("want a valid lesson with a warning, got %v", err)
				}
				probs = l.Warnings
			} else {
				if err == nil {
					t.Fatalf("want an error, the lesson validated (warnings: %v)", l.Warnings)
				}
				if !errors.Is(err, tc.kind) {
					t.Errorf("errors.Is(err, %v) = false; err:\n%v", tc.kind, err)
				}
				probs = ProblemsOf(err)
			}
			for _, p := range probs {
				if p.Kind == tc.kind && p.Field == tc.field && strings.Contains(p.Message, tc.msg) {
					if p.Pos.Line != tc.line {
						t.Errorf("problem at line %d, want %d: %v", p.Pos.Line, tc.line, p)
					}
					wantPrefix := "/lessons/demo/lesson.meta.yaml:"
					if !strings.HasPrefix(p.Error(), wantPrefix) {
						t.Errorf("problem text %q does not start with %q", p.Error(), wantPrefix)
					}
					return
				}
			}
			t.Fatalf("no %v problem on %q containing %q; got:\n%v", tc.kind, tc.field, tc.msg, joinProblems(probs))
		})
	}
}

func joinProblems(ps []*Problem) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Error())
		b.WriteByte('\n')
	}
	return b.String()
}

func TestAllProblemsInOnePass(t *testing.T) {
	src := baseLesson
	src = strings.Replace(src, "slug: demo", "slug: Demo", 1)
	src = strings.Replace(src, "port: 22", "port: 0", 1)
	src = strings.Replace(src, "b: r2", "b: r9", 1)
	src = strings.Replace(src, "tier: local", "tier: local\nfoo: 1", 1)
	fsys := baseFS()
	delete(fsys, "stage0/guide.md")
	_, err := load(t, src, fsys, Options{})
	var ve *ValidationError
	if !errors.As(err, &ve) {
		t.Fatalf("want *ValidationError, got %T %v", err, err)
	}
	if got := len(ve.Errors()); got != 4 {
		t.Errorf("%d errors, want 4:\n%v", got, err)
	}
	if got := len(ve.Warnings()); got != 1 {
		t.Errorf("%d warnings, want 1 (unknown key foo)", got)
	}
	for _, kind := range []error{ErrInvalid, ErrReference, ErrMissingFile} {
		if !errors.Is(err, kind) {
			t.Errorf("errors.Is(err, %v) = false", kind)
		}
	}
	var p *Problem
	if !errors.As(err, &p) || p.Pos.Line == 0 {
		t.Errorf("errors.As(*Problem) = %v", p)
	}
	// The text lists errors in file order, one per line.
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "/lessons/demo/lesson.meta.yaml:2:7: slug: ") {
		t.Errorf("error text:\n%s", err)
	}
}

func TestPerStageConfigResolution(t *testing.T) {
	src := strings.Replace(baseLesson, "configurationType: python", "configurationType: napalm", 1)
	src = strings.Replace(src, "    guideType: markdown\n", "    guideType: markdown\n  - guideType: markdown\n", 1)
	fsys := baseFS()
	fsys["stage0/configs/r1-junos.txt"] = &fstest.MapFile{Data: []byte("x")}
	fsys["stage1/guide.md"] = &fstest.MapFile{Data: []byte("x")}
	fsys["stage1/configs/r1-eos.txt"] = &fstest.MapFile{Data: []byte("x")}
	l, err := load(t, src, fsys, Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := l.Endpoints[0].Configs
	if len(got) != 2 || got[0].Driver != "junos" || got[1].Driver != "eos" ||
		got[0].Rel != "stage0/configs/r1-junos.txt" || got[1].Rel != "stage1/configs/r1-eos.txt" {
		t.Fatalf("configs = %+v", got)
	}
}

func TestConfigNameIsNotARegexp(t *testing.T) {
	// antidote-core built a regexp from the endpoint name: "r.1" matched
	// "rx1.py". Exact matching does not.
	src := strings.NewReplacer("name: r1", "name: r-1", "a: r1", "a: r-1").Replace(baseLesson)
	fsys := baseFS()
	fsys["stage0/configs/rx-1.py"] = &fstest.MapFile{Data: []byte("x")}
	if _, err := load(t, src, fsys, Options{}); !errors.Is(err, ErrMissingFile) {
		t.Fatalf("want ErrMissingFile for r-1, got %v", err)
	}
}

func TestSizeAndAliasLimits(t *testing.T) {
	big := baseLesson + "tags:\n" + strings.Repeat("  - a-tag-that-takes-some-room\n", MaxFileSize/30+10)
	if _, err := Parse("big.yaml", []byte(big), Options{}); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("over 1 MiB: want ErrTooLarge, got %v", err)
	}
	// Aliases only cost when they expand into fields that are decoded: a
	// list of 1000 aliases of an endpoint holding 1000 aliased
	// presentations is a million presentations from a few kilobytes.
	bomb := "p: &p {name: cli, port: 22, type: ssh}\n" +
		"e: &e {name: x, image: y, presentations: [" + strings.Repeat("*p, ", 999) + "*p]}\n" +
		"endpoints: [" + strings.Repeat("*e, ", 999) + "*e]\n"
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(bomb), Options{})
	if !errors.Is(err, ErrTooComplex) {
		t.Fatalf("alias bomb: want ErrTooComplex, got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("alias bomb refused after %v; want well under a second", d)
	}
	var p *Problem
	if !errors.As(err, &p) || p.Pos.Line < 2 {
		t.Errorf("alias bomb error does not point at an alias (lines 2-3): %v", err)
	}
}

func TestAliasesAndMergeKeysWork(t *testing.T) {
	src := `name: Demo
slug: demo
category: tools
tier: local
description: d
shortDescription: s
x-cli: &cli {name: cli, port: 22, type: ssh}
x-ep: &ep
  image: utility
  presentations: [*cli]
endpoints:
  - <<: *ep
    name: r1
  - <<: *ep
    name: r2
    image: other
stages: [{guideType: markdown}]
`
	raw, err := Parse("l.yaml", []byte(src), Options{})
	if err == nil || !errors.Is(err, ErrUnknownKey) {
		// x-cli and x-ep are unknown keys: warnings only, so Parse returns
		// no error.
		if err != nil {
			t.Fatal(err)
		}
	}
	l, err := Validate(raw, nil, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(l.Endpoints) != 2 || l.Endpoints[0].Image != "utility" || l.Endpoints[1].Image != "other" ||
		len(l.Endpoints[1].Presentations) != 1 || l.Endpoints[1].Presentations[0].Port != 22 {
		t.Fatalf("endpoints = %+v", l.Endpoints)
	}
	if len(l.Warnings) != 2 {
		t.Fatalf("want 2 unknown-key warnings (x-cli, x-ep), got %v", l.Warnings)
	}
}

func TestSizeLimits(t *testing.T) {
	stages := strings.Repeat("  - guideType: markdown\n", MaxStages+1)
	src := strings.Replace(baseLesson, "stages:\n  - description: One\n    guideType: markdown\n", "stages:\n"+stages, 1)
	_, err := load(t, src, baseFS(), Options{})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "stages: 101 stages; endpointkit handles at most 100") {
		t.Fatalf("want the stage limit, got %v", err)
	}
	// The file checks were skipped: no missing-guide error per stage.
	if errors.Is(err, ErrMissingFile) {
		t.Fatalf("file checks ran on an oversized lesson: %v", err)
	}
}

// TestHostileLessonIsQuick: a file just under the size limit full of
// near-miss names must not make the checker do quadratic work.
func TestHostileLessonIsQuick(t *testing.T) {
	var b strings.Builder
	b.WriteString("name: x\nslug: x\ncategory: tools\ntier: local\ndescription: x\nshortDescription: x\nstages: [{guideType: markdown}]\nendpoints:\n")
	name := func(i int) string { return fmt.Sprintf("e%062d", i) } // 63-character DNS labels
	for i := range MaxEndpoints {
		fmt.Fprintf(&b, "- {name: %s, image: x, additionalPorts: [1]}\n", name(i))
	}
	b.WriteString("connections:\n")
	for i := range MaxConnections {
		fmt.Fprintf(&b, "- {a: %s, b: %s}\n", name(i%MaxEndpoints), "z"+name(i)[1:])
	}
	if b.Len() > MaxFileSize {
		t.Fatalf("test input is %d bytes, over the limit", b.Len())
	}
	start := time.Now()
	_, err := load(t, b.String(), baseFS(), Options{})
	if !errors.Is(err, ErrReference) {
		t.Fatalf("want ErrReference, got %.300v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("validation took %v", d)
	}
}
