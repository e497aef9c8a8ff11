package strictyaml

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestFormat(t *testing.T) {
	for _, tc := range []struct {
		file    string
		pos     Position
		warning bool
		field   string
		want    string
	}{
		{"a.yaml", Position{3, 7}, false, "users[0].name", "a.yaml:3:7: users[0].name: bad"},
		{"a.yaml", Position{3, 7}, true, "users[0].name", "a.yaml:3:7: warning: users[0].name: bad"},
		{"a.yaml", Position{1, 1}, false, "", "a.yaml:1:1: bad"},
		{"a.yaml", Position{}, false, "", "a.yaml: bad"},
		{"a.yaml", Position{}, true, "slug", "a.yaml: warning: slug: bad"},
	} {
		if got := Format(tc.file, tc.pos, tc.warning, tc.field, "bad"); got != tc.want {
			t.Errorf("Format(%q, %v, %v, %q) = %q; want %q", tc.file, tc.pos, tc.warning, tc.field, got, tc.want)
		}
	}
}

func TestPositionsAt(t *testing.T) {
	ps := Positions{"": {1, 1}, "users": {3, 8}, "users[1]": {5, 5}, "users[1].name": {5, 11}}
	for path, want := range map[string]Position{
		"users[1].name":    {5, 11},
		"users[1].shell":   {5, 5}, // missing field: where its mapping starts
		"users[2].name":    {3, 8},
		"qemu.cpus":        {1, 1},
		"users[1].keys[0]": {5, 5},
	} {
		if got := ps.At(path); got != want {
			t.Errorf("At(%q) = %v; want %v", path, got, want)
		}
	}
	if got := (Positions{}).At("x.y"); got != (Position{}) {
		t.Errorf("empty Positions: At = %v; want zero", got)
	}
	if !ps.Has("users[1]") || ps.Has("users[2]") {
		t.Error("Has is wrong")
	}
	for path, want := range map[string]string{"a.b[2]": "a.b", "a.b": "a", "a": "", "": ""} {
		if got := Parent(path); got != want {
			t.Errorf("Parent(%q) = %q; want %q", path, got, want)
		}
	}
	if Join("", "a") != "a" || Join("a[1]", "b") != "a[1].b" {
		t.Error("Join is wrong")
	}
}

func TestKindString(t *testing.T) {
	for k, want := range map[Kind]string{Syntax: "syntax", ExtraDocument: "extra-document", TooLarge: "too-large",
		TooComplex: "too-complex", Type: "type", UnknownKey: "unknown-key", Duplicate: "duplicate", 0: "kind(0)"} {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q; want %q", k, got, want)
		}
	}
}

func TestSuggest(t *testing.T) {
	names := []string{"name", "password", "authorizedKeys", "slug", "networkInterfaces"}
	for key, want := range map[string]string{
		"nmae":                  "name",           // swap
		"NAME":                  "name",           // case
		"pasword":               "password",       // deletion
		"authorisedKeys":        "authorizedKeys", // substitution
		"sulg":                  "slug",
		"networkinterface":      "networkInterfaces",
		"x":                     "",
		"shell":                 "",
		"passwordpassword":      "",
		strings.Repeat("a", 40): "",
	} {
		if got := Suggest(key, names); got != want {
			t.Errorf("Suggest(%q) = %q; want %q", key, got, want)
		}
	}
	// Only the first 200 candidates are compared by distance, but a
	// case-insensitive match is found anywhere.
	many := make([]string, 300)
	for i := range many {
		many[i] = strings.Repeat("z", i%20+10)
	}
	many[250] = "target"
	if got := Suggest("targte", many); got != "" {
		t.Errorf("Suggest past the bound = %q; want none", got)
	}
	if got := Suggest("TARGET", many); got != "target" {
		t.Errorf("Suggest case-insensitive = %q; want target", got)
	}
}

func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.yaml"), filepath.Join(dir, "big.yaml")
	os.WriteFile(small, []byte("name: a\n"), 0o644)
	os.WriteFile(big, make([]byte, MaxSize+1), 0o644)
	if data, tooLarge, err := ReadFile(small, Options{}); string(data) != "name: a\n" || tooLarge != nil || err != nil {
		t.Errorf("ReadFile(small) = %q, %v, %v", data, tooLarge, err)
	}
	data, tooLarge, err := ReadFile(big, Options{Document: "a recipe"})
	if data != nil || err != nil || tooLarge == nil || tooLarge.Kind != TooLarge ||
		tooLarge.Message != "larger than 1048576 bytes (1 MiB); a recipe is never that big" {
		t.Errorf("ReadFile(big) = %d bytes, %+v, %v", len(data), tooLarge, err)
	}
	if _, _, err := ReadFile(filepath.Join(dir, "missing"), Options{}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadFile(missing) error = %v; want not exist", err)
	}
	if _, _, err := ReadFile(dir, Options{}); err == nil || !strings.HasPrefix(err.Error(), dir+": read ") {
		t.Errorf("ReadFile(dir) error = %v; want a read error naming the path", err)
	}
}

func TestLines(t *testing.T) {
	for _, c := range []struct {
		in   string
		want int
	}{
		{"", 1},
		{"a: 1\n", 2},
		{"a: 1\r\nb: 2\rc: 3", 3},
		{"a: \"x\u2028y\u0085z\u2029\"", 1},
		{"\xfe\xff\x00a\x00\n\x00b", 2}, // UTF-16BE "a\nb"
		{"\xff\xfea\x00\n\x00b\x00", 2}, // UTF-16LE "a\nb"
		{"\xfe\xff\x20\x28\x20\x28", 1}, // UTF-16BE LS LS
	} {
		if got := Lines([]byte(c.in)); got != c.want {
			t.Errorf("Lines(%q) = %d, want %d", c.in, got, c.want)
		}
	}
}

// Problems are placed where an editor shows them, though yaml.v3 also
// breaks lines at NEL, LS and PS and reads UTF-16.
func TestEditorPositions(t *testing.T) {
	utf16le := func(s string) string {
		b := []byte{0xff, 0xfe}
		for _, r := range s {
			b = append(b, byte(r), 0)
		}
		return string(b)
	}
	for _, c := range []struct {
		name, in string
		want     Position
	}{
		{"LS in a quoted value", "name: \"x\u2028y\"\nport: [1]\n", Position{2, 7}},
		{"NEL and PS in plain values", "tags: [a\u0085b, c\u2029d]\nlabels: {a: b}\nport: x\n", Position{3, 7}},
		{"after LS on the same line", "name: \"x\u2028\"\nport: {a: 1}\n", Position{2, 7}},
		{"UTF-16LE", utf16le("name: a\nport: [1]\n"), Position{2, 7}},
		{"plain UTF-8", "name: a\nport: [1]\n", Position{2, 7}},
	} {
		var out target
		res := Unmarshal([]byte(c.in), &out, Options{})
		if len(res.Problems) != 1 || res.Problems[0].Pos != c.want {
			t.Errorf("%s: problems %+v; want one at %v", c.name, res.Problems, c.want)
		}
	}
	// A syntax error: yaml.v3 says line 3, the editor shows line 1.
	_, probs := Parse([]byte("a: 1\u2028b: 2\u2028- c"), Options{})
	if len(probs) == 0 || probs[0].Pos.Line != 1 {
		t.Errorf("problems %+v; want one on line 1", probs)
	}
}
