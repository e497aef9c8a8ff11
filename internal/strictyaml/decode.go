package strictyaml

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// aliasFactor bounds alias expansion: decoding may visit at most this many
// times the number of nodes written in the file (plus a small allowance)
// before it stops with a TooComplex problem.
const aliasFactor = 10

// Options tune [Parse], [Decode] and [Unmarshal].
type Options struct {
	// Document names the kind of file in messages, with its article ("a
	// metafile", "an image recipe"); default "a file".
	Document string
	// Strict makes unknown and duplicate keys errors; by default they are
	// warnings.
	Strict bool
	// Hint, when set, returns what to say about an unknown key of a struct
	// of type t instead of guessing (what replaced a key of an older
	// format). Called only for unknown keys.
	Hint func(t reflect.Type, key string) (hint string, ok bool)
}

func (o *Options) document() string {
	if o.Document == "" {
		return "a file"
	}
	return o.Document
}

// Decode decodes root into out, a pointer to a struct, by the `yaml` tags
// of its fields (name only; "-" and untagged fields are skipped). Fields
// may be structs, pointers, slices, maps with string keys, strings, ints
// and bools; other field types are a programming error and panic. A null
// value leaves its field as it is. It returns where each field was
// written, the problems in the order found, and whether decoding ran to
// the end (false for an alias bomb).
func Decode(root *yaml.Node, out any, opts Options) (Positions, []Problem, bool) {
	d := &decoder{
		opts:   opts,
		pos:    Positions{},
		budget: aliasFactor*countNodes(root) + 1000,
		fields: map[reflect.Type][]fieldInfo{},
	}
	d.decode(root, reflect.ValueOf(out).Elem(), "")
	return d.pos, d.probs, !d.exhausted
}

// fieldInfo is one decodable struct field.
type fieldInfo struct {
	name  string
	index int
}

// decoder turns a yaml.v3 node tree into structs, recording positions and
// reporting problems instead of stopping at the first.
type decoder struct {
	opts      Options
	pos       Positions
	probs     []Problem
	budget    int // node visits left before TooComplex
	exhausted bool
	fields    map[reflect.Type][]fieldInfo
}

// countNodes counts the nodes as written (aliases are not followed).
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func (d *decoder) problem(warning bool, kind Kind, n *yaml.Node, path, format string, args ...any) {
	d.probs = append(d.probs, Problem{Pos: Position{n.Line, n.Column}, Field: path,
		Kind: kind, Warning: warning, Message: fmt.Sprintf(format, args...)})
}

// keyProblem reports an unknown or duplicate key: a warning unless Strict.
func (d *decoder) keyProblem(kind Kind, k *yaml.Node, path, format string, args ...any) {
	d.problem(!d.opts.Strict, kind, k, path, format, args...)
}

func (d *decoder) typeProblem(n *yaml.Node, path, format string, args ...any) {
	d.problem(false, Type, n, path, format, args...)
}

// resolve follows aliases, charging the budget. It returns nil when the
// budget is spent.
func (d *decoder) resolve(n *yaml.Node) *yaml.Node {
	site := n
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if d.exhausted {
		return nil
	}
	d.budget--
	if d.budget < 0 {
		d.exhausted = true
		d.problem(false, TooComplex, site, "",
			"aliases expand to far more nodes than the file holds; refusing to expand them (write the values out)")
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// Describe says what a node is, for "want X, got Y" messages: "a
// mapping", "a list", "the number 3", "the boolean true", "nothing" or
// the quoted text (cut after 40 bytes).
func Describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:37] + "..."
		}
		switch n.ShortTag() {
		case "!!int", "!!float":
			return "the number " + v
		case "!!bool":
			return "the boolean " + v
		case "!!null":
			return "nothing"
		}
		return strconv.Quote(v)
	}
	return "something else"
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	pos := Position{n.Line, n.Column}
	if n = d.resolve(n); n == nil {
		return
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return
		}
		d.decode(n.Content[0], v, path)
		return
	}
	d.pos[path] = pos
	if isNull(n) {
		return // absent in effect; the caller's required-field rules report it
	}
	if d.decodeScalar(n, v, path) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			v.Set(reflect.New(v.Type().Elem()))
		}
		d.decode(n, v.Elem(), path)
	case reflect.Struct:
		d.decodeStruct(n, v, path)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.typeProblem(n, path, "want a list, got %s", Describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), path+"["+strconv.Itoa(i)+"]")
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.typeProblem(n, path, "want text, got %s", Describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		i, ok := wholeNumber(n)
		if !ok {
			d.typeProblem(n, path, "want a whole number, got %s", Describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			d.typeProblem(n, path, "want true or false, got %s", Describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic("strictyaml: Decode does not handle " + v.Type().String())
	}
}

// wholeNumber reads an integer scalar as yaml.v3 resolves it (0x1F, 0o17,
// 1_000), and, as yaml.v2 (so Antidote) did, a float with no fraction
// (22.0, or 08080 which YAML resolves as a float).
func wholeNumber(n *yaml.Node) (int64, bool) {
	if n.Kind != yaml.ScalarNode {
		return 0, false
	}
	switch n.ShortTag() {
	case "!!int":
		var i int64
		return i, n.Decode(&i) == nil
	case "!!float":
		var f float64
		if n.Decode(&f) != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, false
		}
		return int64(f), true
	}
	return 0, false
}

// parseBool accepts YAML 1.2 booleans and, as yaml.v2 (and so Antidote) did,
// the YAML 1.1 words yes/no/on/off.
func parseBool(n *yaml.Node) (bool, bool) {
	if n.Kind != yaml.ScalarNode {
		return false, false
	}
	switch strings.ToLower(n.Value) {
	case "true", "yes", "on", "y":
		return true, true
	case "false", "no", "off", "n":
		return false, true
	}
	return false, false
}

// pair is a key and its value in a mapping, after merges.
type pair struct {
	key, value *yaml.Node
}

// pairs lists a mapping's entries with `<<` merge keys applied (explicit
// keys win). Duplicate explicit keys are reported.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	var out, merged []pair
	seen := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
			merged = append(merged, d.mergeSource(val, path)...)
			continue
		}
		if k.Kind != yaml.ScalarNode {
			d.typeProblem(k, path, "a key must be a plain name, got %s", Describe(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			// yaml.v2 (so Antidote) let the last one win: so do we, and
			// say so (an error under Strict).
			d.keyProblem(Duplicate, k, Join(path, k.Value),
				"key given twice (first at line %d); the last one is used, remove the other", prev.Line)
			for i := range out {
				if out[i].key == prev {
					out[i] = pair{k, val}
				}
			}
			seen[k.Value] = k
			continue
		}
		seen[k.Value] = k
		out = append(out, pair{k, val})
	}
	for _, p := range merged {
		if _, ok := seen[p.key.Value]; !ok {
			seen[p.key.Value] = p.key
			out = append(out, p)
		}
	}
	return out
}

func (d *decoder) mergeSource(val *yaml.Node, path string) []pair {
	if val = d.resolve(val); val == nil {
		return nil
	}
	switch val.Kind {
	case yaml.MappingNode:
		return d.pairs(val, path)
	case yaml.SequenceNode:
		var out []pair
		for _, item := range val.Content {
			out = append(out, d.mergeSource(item, path)...)
		}
		return out
	}
	d.typeProblem(val, path, "`<<` merges a mapping, got %s", Describe(val))
	return nil
}

func (d *decoder) structFields(t reflect.Type) []fieldInfo {
	if fs, ok := d.fields[t]; ok {
		return fs
	}
	var fs []fieldInfo
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" || !f.IsExported() {
			continue
		}
		fs = append(fs, fieldInfo{name: name, index: i})
	}
	d.fields[t] = fs
	return fs
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeProblem(n, path, "want a mapping (key: value lines), got %s", Describe(n))
		return
	}
	fields := d.structFields(v.Type())
	for _, p := range d.pairs(n, path) {
		key := p.key.Value
		idx := -1
		for _, f := range fields {
			if f.name == key {
				idx = f.index
				break
			}
		}
		if idx < 0 {
			d.unknownKey(p.key, v.Type(), path, key, fields)
			continue
		}
		d.decode(p.value, v.Field(idx), Join(path, key))
	}
}

func (d *decoder) unknownKey(k *yaml.Node, t reflect.Type, path, key string, fields []fieldInfo) {
	field := Join(path, key)
	if d.opts.Hint != nil {
		if hint, ok := d.opts.Hint(t, key); ok {
			d.keyProblem(UnknownKey, k, field, "unknown key; %s", hint)
			return
		}
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if s := Suggest(key, names); s != "" {
		d.keyProblem(UnknownKey, k, field, "unknown key; did you mean %q?", s)
		return
	}
	d.keyProblem(UnknownKey, k, field, "unknown key (known here: %s)", strings.Join(names, ", "))
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.typeProblem(n, path, "want a mapping, got %s", Describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, p := range d.pairs(n, path) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p.value, elem, Join(path, p.key.Value))
		m.SetMapIndex(reflect.ValueOf(p.key.Value), elem)
	}
	v.Set(m)
}

// ScalarDecoder is implemented (on the pointer) by field types that read a
// scalar their own way, such as "true, false or a port number".
// DecodeYAMLScalar gets the scalar node and returns what to say when the
// value does not fit (for example "want true, false or a port number"),
// or "" when it was taken. Anything but a scalar is reported without
// calling it.
type ScalarDecoder interface {
	DecodeYAMLScalar(n *yaml.Node) (problem string)
}

// decodeScalar decodes n into v when v's type is a [ScalarDecoder] and
// reports whether it was one.
func (d *decoder) decodeScalar(n *yaml.Node, v reflect.Value, path string) bool {
	if !v.CanAddr() {
		return false
	}
	sd, ok := v.Addr().Interface().(ScalarDecoder)
	if !ok {
		return false
	}
	if n.Kind != yaml.ScalarNode {
		d.typeProblem(n, path, "want a single value, got %s", Describe(n))
		return true
	}
	if msg := sd.DecodeYAMLScalar(n); msg != "" {
		d.typeProblem(n, path, "%s, got %s", msg, Describe(n))
	}
	return true
}

// Bool reads a scalar as a boolean the way Decode does (yes/no/on/off
// too), for [ScalarDecoder] implementations.
func Bool(n *yaml.Node) (bool, bool) { return parseBool(n) }

// WholeNumber reads a scalar as a whole number the way Decode does (22.0
// is 22), for [ScalarDecoder] implementations.
func WholeNumber(n *yaml.Node) (int64, bool) { return wholeNumber(n) }
