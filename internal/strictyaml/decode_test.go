package strictyaml

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// target is a small struct shaped like the module's file formats.
type target struct {
	Name    string            `yaml:"name"`
	Port    int               `yaml:"port,omitempty"`
	Enabled *bool             `yaml:"enabled,omitempty"`
	Tags    []string          `yaml:"tags,omitempty"`
	Users   []user            `yaml:"users,omitempty"`
	Labels  map[string]string `yaml:"labels,omitempty"`
	Inner   *inner            `yaml:"inner,omitempty"`
	Skipped string            `yaml:"-"`
	hidden  string
}

type user struct {
	Name     string `yaml:"name"`
	Password string `yaml:"password,omitempty"`
}

type inner struct {
	Size int64 `yaml:"size"`
}

// got renders problems as "LINE:COL kind [warning] FIELD: MESSAGE" lines.
func got(ps []Problem) string {
	var b strings.Builder
	for _, p := range ps {
		w := ""
		if p.Warning {
			w = " warning"
		}
		fmt.Fprintf(&b, "%d:%d %s%s %s: %s\n", p.Pos.Line, p.Pos.Column, p.Kind, w, p.Field, p.Message)
	}
	return b.String()
}

func TestUnmarshalProblems(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		strict     bool
		want       []string // LINE:COL kind [warning] FIELD: MESSAGE
	}{
		{"valid", "name: a\nport: 22\n", false, nil},
		{"wrong types", "name: [a]\nport: lots\nenabled: maybe\ntags: x\nusers: {a: b}\nlabels: [x]\ninner: 3\n", false, []string{
			`1:7 type name: want text, got a list`,
			`2:7 type port: want a whole number, got "lots"`,
			`3:10 type enabled: want true or false, got "maybe"`,
			`4:7 type tags: want a list, got "x"`,
			`5:8 type users: want a list, got a mapping`,
			`6:9 type labels: want a mapping, got a list`,
			`7:8 type inner: want a mapping (key: value lines), got the number 3`,
		}},
		{"numbers", "port: 1.5\ninner: {size: 1e300}\n", false, []string{
			`1:7 type port: want a whole number, got the number 1.5`,
			`2:15 type inner.size: want a whole number, got the number 1e300`,
		}},
		{"long text is cut", "port: " + strings.Repeat("x", 50) + "\n", false, []string{
			`1:7 type port: want a whole number, got "` + strings.Repeat("x", 37) + `..."`,
		}},
		{"unknown keys warn", "name: a\nnmae: b\nusers:\n  - name: u\n    pasword: p\nbogus: 1\n", false, []string{
			`2:1 unknown-key warning nmae: unknown key; did you mean "name"?`,
			`5:5 unknown-key warning users[0].pasword: unknown key; did you mean "password"?`,
			`6:1 unknown-key warning bogus: unknown key (known here: name, port, enabled, tags, users, labels, inner)`,
		}},
		{"unknown keys are errors when strict", "Name: a\n", true, []string{
			`1:1 unknown-key Name: unknown key; did you mean "name"?`,
		}},
		{"duplicate key", "name: a\nport: 1\nname: b\n", false, []string{
			`3:1 duplicate warning name: key given twice (first at line 1); the last one is used, remove the other`,
		}},
		{"duplicate key strict", "inner:\n  size: 1\n  size: 2\n", true, []string{
			`3:3 duplicate inner.size: key given twice (first at line 2); the last one is used, remove the other`,
		}},
		{"key that is not a name", "[a]: 1\n", false, []string{`1:1 type : a key must be a plain name, got a list`}},
		{"bad merge", "<<: [1]\n", false, []string{"1:6 type : `<<` merges a mapping, got the number 1"}},
		{"syntax, scanner error", "name: a\n\tport: 1\n", false, []string{`2:1 syntax : not valid YAML: found a tab character that violates indentation`}},
		{"syntax, parser error", "name: [a\n", false, []string{`2:1 syntax : not valid YAML: did not find expected ',' or ']'`}},
		{"second document", "name: a\n---\nname: b\n", false, []string{
			"2:1 extra-document warning : a second YAML document is ignored; a file holds one (remove the extra `---` and what follows)",
		}},
		{"empty second document", "name: a\n---\n", false, nil},
		{"too large", "#" + strings.Repeat(" ", MaxSize), false, []string{
			`0:0 too-large : 1048577 bytes; a file may be at most 1048576 bytes (1 MiB)`,
		}},
		// An aliased value is checked where it is defined; its position is
		// that of the alias.
		{"alias of the wrong type", "a: &a [x]\nname: *a\n", false, []string{
			`1:1 unknown-key warning a: unknown key (known here: name, port, enabled, tags, users, labels, inner)`,
			`1:4 type name: want text, got a list`,
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out target
			res := Unmarshal([]byte(tc.yaml), &out, Options{Strict: tc.strict})
			want := ""
			for _, w := range tc.want {
				want += w + "\n"
			}
			if g := got(res.Problems); g != want {
				t.Errorf("Unmarshal(%q) problems:\n%swant:\n%s", tc.yaml, g, want)
			}
		})
	}
}

func TestAliasBombStops(t *testing.T) {
	const bomb = "a: &a [{}, {}, {}, {}, {}, {}, {}, {}, {}, {}]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n" +
		"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\nusers: [{<<: *d}]\n"
	var out target
	res := Unmarshal([]byte(bomb), &out, Options{Strict: true})
	if res.Decoded {
		t.Fatal("Decoded = true for an alias bomb")
	}
	// Problems are sorted by position: the expansion ran out inside a's list.
	last := res.Problems[1]
	if last.Kind != TooComplex || last.Warning || last.Pos != (Position{1, 12}) ||
		last.Message != "aliases expand to far more nodes than the file holds; refusing to expand them (write the values out)" {
		t.Errorf("second problem = %+v; want TooComplex at 1:12", last)
	}
	if n := len(res.Problems); n != 5 {
		t.Errorf("%d problems; want 4 unknown keys and 1 alias bomb:\n%s", n, got(res.Problems))
	}
}

func TestUnmarshalValues(t *testing.T) {
	const doc = `name: a
port: 22.0
enabled: yes
tags: [x, 1, true]
base: &base {name: u, password: p}
users:
  - <<: *base
    name: v
  - <<: [{password: q}, *base]
labels: {a: b, c: ~}
inner: {size: 0x1F}
empty:
`
	var out target
	res := Unmarshal([]byte(doc), &out, Options{})
	for _, p := range res.Problems {
		if !p.Warning {
			t.Errorf("problem %+v", p)
		}
	}
	if !res.Decoded || res.Root == nil {
		t.Fatalf("Decoded = %v, Root = %v", res.Decoded, res.Root)
	}
	yes := true
	want := target{Name: "a", Port: 22, Enabled: &yes, Tags: []string{"x", "1", "true"},
		Users:  []user{{Name: "v", Password: "p"}, {Name: "u", Password: "q"}},
		Labels: map[string]string{"a": "b", "c": ""}, Inner: &inner{Size: 31}}
	if !reflect.DeepEqual(out, want) {
		t.Errorf("decoded %+v\nwant    %+v", out, want)
	}
	for path, pos := range map[string]Position{
		"": {1, 1}, "name": {1, 7}, "port": {2, 7}, "tags[1]": {4, 11}, "users[0].name": {8, 11},
		"users[0].password": {5, 33}, "labels.c": {10, 19}, "inner.size": {11, 15},
	} {
		if g := res.Positions[path]; g != pos {
			t.Errorf("Positions[%q] = %v; want %v", path, g, pos)
		}
	}
}

// TestSkippedFields: fields tagged "-" and unexported ones are not keys.
func TestSkippedFields(t *testing.T) {
	var out target
	res := Unmarshal([]byte("Skipped: x\nhidden: y\n"), &out, Options{Strict: true})
	want := "1:1 unknown-key Skipped: unknown key (known here: name, port, enabled, tags, users, labels, inner)\n" +
		"2:1 unknown-key hidden: unknown key (known here: name, port, enabled, tags, users, labels, inner)\n"
	if g := got(res.Problems); g != want || out.Skipped != "" || out.hidden != "" {
		t.Errorf("problems:\n%swant:\n%s(Skipped %q, hidden %q)", g, want, out.Skipped, out.hidden)
	}
}

func TestWholeNumbers(t *testing.T) {
	for in, want := range map[string]int64{"22": 22, "22.0": 22, "08080": 8080, "0o17": 15, "1_000": 1000, "-3": -3} {
		var out inner
		res := Unmarshal([]byte("size: "+in), &out, Options{})
		if len(res.Problems) != 0 || out.Size != want {
			t.Errorf("size: %s = %d, %v; want %d", in, out.Size, res.Problems, want)
		}
	}
	for _, in := range []string{"1.5", "1e300", ".inf", "x", "9223372036854775808"} {
		var out inner
		if res := Unmarshal([]byte("size: "+in), &out, Options{}); len(res.Problems) != 1 || res.Problems[0].Kind != Type {
			t.Errorf("size: %s: problems %v; want one type problem", in, res.Problems)
		}
	}
}

func TestBooleans(t *testing.T) {
	for in, want := range map[string]bool{"true": true, "Yes": true, "on": true, "y": true, "false": false, "NO": false, "off": false, "n": false} {
		var out target
		res := Unmarshal([]byte("enabled: "+in), &out, Options{})
		if len(res.Problems) != 0 || out.Enabled == nil || *out.Enabled != want {
			t.Errorf("enabled: %s = %v, %v; want %v", in, out.Enabled, res.Problems, want)
		}
	}
}

func TestHint(t *testing.T) {
	hint := func(ty reflect.Type, key string) (string, bool) {
		if ty == reflect.TypeFor[user]() && key == "pass" {
			return `"pass" is now "password"`, true
		}
		return "", false
	}
	var out target
	res := Unmarshal([]byte("users: [{name: a, pass: b}]\nnam: x\n"), &out, Options{Hint: hint, Document: "a test file"})
	want := "1:19 unknown-key warning users[0].pass: unknown key; \"pass\" is now \"password\"\n" +
		"2:1 unknown-key warning nam: unknown key; did you mean \"name\"?\n"
	if g := got(res.Problems); g != want {
		t.Errorf("problems:\n%swant:\n%s", g, want)
	}
}

func TestEmptyInput(t *testing.T) {
	for _, in := range []string{"", "# nothing\n"} {
		root, probs := Parse([]byte(in), Options{})
		if root == nil || len(root.Content) != 0 || root.Line != 1 || root.Column != 1 || len(probs) != 0 {
			t.Errorf("Parse(%q) = %+v, %v; want an empty mapping at 1:1", in, root, probs)
		}
	}
}

func TestDecodePanicsOnUnsupportedField(t *testing.T) {
	defer func() {
		if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "float64") {
			t.Errorf("recover() = %v; want a panic naming float64", r)
		}
	}()
	var out struct {
		F float64 `yaml:"f"`
	}
	Unmarshal([]byte("f: 1.5"), &out, Options{})
}

// onOrPort is a ScalarDecoder: true, false or a port number.
type onOrPort struct {
	On   bool
	Port int
}

func (o *onOrPort) DecodeYAMLScalar(n *yaml.Node) string {
	if b, ok := Bool(n); ok {
		o.On = b
		return ""
	}
	if p, ok := WholeNumber(n); ok && p > 0 && p < 65536 {
		o.On, o.Port = true, int(p)
		return ""
	}
	return "want true, false or a port number"
}

func TestScalarDecoder(t *testing.T) {
	var out struct {
		A onOrPort  `yaml:"a"`
		B *onOrPort `yaml:"b"`
		C onOrPort  `yaml:"c"`
		D onOrPort  `yaml:"d"`
		E onOrPort  `yaml:"e"`
	}
	res := Unmarshal([]byte("a: yes\nb: 830.0\nc: [1]\nd: 70000\ne: false\n"), &out, Options{Strict: true})
	want := "3:4 type c: want a single value, got a list\n4:4 type d: want true, false or a port number, got the number 70000\n"
	if g := got(res.Problems); g != want {
		t.Errorf("problems:\n%s\nwant:\n%s", g, want)
	}
	if !out.A.On || out.A.Port != 0 || out.B == nil || *out.B != (onOrPort{true, 830}) || out.E.On {
		t.Errorf("decoded %+v, b %+v", out, out.B)
	}
	if p := res.Positions.At("b"); p.Line != 2 {
		t.Errorf("position of b = %v", p)
	}
}
