package strictyaml

import "testing"

// FuzzUnmarshal: no input panics, every problem has a category, a message
// and a line within the input (0 only for a whole-file problem), Decoded
// is false only with an error, and Positions always holds the root of a
// parsed input.
func FuzzUnmarshal(f *testing.F) {
	for _, seed := range []string{
		"name: a\nport: 22\nenabled: yes\ntags: [a, b]\nusers: [{name: u, password: p}]\nlabels: {a: b}\ninner: {size: 0x10}\n",
		"base: &b {name: u}\nusers: [{<<: *b, password: p}, {<<: [*b, {name: v}]}]\n",
		"a: &a [*a]\n",
		"a: &a [x, x]\nb: &b [*a, *a]\ntags: [*b, *b]\n",
		"name: a\nname: b\n---\nname: c\n",
		"[a]: 1\n<<: 3\n",
		"name: [a\n",
		"\tname: a\n",
	} {
		f.Add([]byte(seed), false)
		f.Add([]byte(seed), true)
	}
	f.Fuzz(func(t *testing.T, data []byte, strict bool) {
		var out target
		res := Unmarshal(data, &out, Options{Strict: strict})
		lines := Lines(data) + 1
		errs := 0
		for _, p := range res.Problems {
			if p.Kind < Syntax || p.Kind > Duplicate || p.Message == "" {
				t.Fatalf("problem without a category or message: %+v", p)
			}
			if p.Pos.Line < 0 || p.Pos.Line > lines || (p.Pos.Line == 0 && p.Kind != TooLarge) {
				t.Fatalf("problem at line %d of a %d-line input: %+v", p.Pos.Line, lines, p)
			}
			if !p.Warning {
				errs++
			}
			if strict && (p.Kind == UnknownKey || p.Kind == Duplicate) && p.Warning {
				t.Fatalf("a %s problem is a warning under Strict: %+v", p.Kind, p)
			}
		}
		if !res.Decoded && errs == 0 {
			t.Fatalf("not decoded, but no error: %+v", res.Problems)
		}
		if res.Root != nil && !res.Positions.Has("") && res.Decoded {
			t.Fatalf("root position not recorded: %v", res.Positions)
		}
	})
}
