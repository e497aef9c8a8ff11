package lessonmeta

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest metafile accepted, in bytes. Larger inputs are
// refused with [ErrTooLarge] before any parsing.
const MaxFileSize = 1 << 20

// aliasFactor bounds alias expansion: decoding may visit at most this many
// times the number of nodes written in the file (plus a small allowance)
// before it stops with [ErrTooComplex].
const aliasFactor = 10

// source remembers where each field of a decoded file was written.
type source struct {
	file string
	pos  map[string]Position // field path → position of its value
}

// at returns the position of path, or of its nearest present ancestor (so a
// missing field is reported where its parent mapping starts).
func (s *source) at(path string) Position {
	for {
		if p, ok := s.pos[path]; ok {
			return p
		}
		if path == "" {
			return Position{Line: 1, Column: 1}
		}
		path = parentPath(path)
	}
}

// has reports whether path was written in the file.
func (s *source) has(path string) bool {
	_, ok := s.pos[path]
	return ok
}

func parentPath(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

func joinPath(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}

// keyHinter is implemented by raw types that know keys of older formats, to
// say what replaced them instead of guessing.
type keyHinter interface {
	keyHints() map[string]string
}

// fieldInfo is one decodable struct field.
type fieldInfo struct {
	name  string
	index int
}

// decoder turns a yaml.v3 node tree into raw structs, recording positions
// and reporting problems instead of stopping at the first.
type decoder struct {
	src       *source
	probs     *problems
	unknown   Severity // severity of unknown keys
	budget    int      // node visits left before ErrTooComplex
	exhausted bool
	fields    map[reflect.Type][]fieldInfo
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseYAML parses data into a single document node. It returns nil and
// records a problem when the input is too large or not YAML. An empty input
// yields an empty mapping.
func parseYAML(file string, data []byte, probs *problems) (root *yaml.Node) {
	if len(data) > MaxFileSize {
		probs.add(&Problem{File: file, Kind: ErrTooLarge, Message: fmt.Sprintf(
			"%d bytes; a metafile may be at most %d bytes (1 MiB)", len(data), MaxFileSize)})
		return nil
	}
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on odd input before
			probs.add(&Problem{File: file, Pos: Position{1, 1}, Kind: ErrSyntax,
				Message: fmt.Sprintf("the YAML parser failed: %v", r)})
			root = nil
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}
	}
	if err != nil {
		probs.add(syntaxProblem(file, err))
		return nil
	}
	// Antidote (yaml.v2) read the first document and ignored the rest: an
	// empty trailing document is fine, a non-empty one is a warning.
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			probs.add(&Problem{File: file, Pos: Position{extra.Line, extra.Column}, Kind: ErrSyntax, Severity: SeverityWarning,
				Message: "a second YAML document is ignored; a metafile holds one (remove the extra `---` and what follows)"})
		}
	} else if !errors.Is(err, io.EOF) {
		probs.add(syntaxProblem(file, err))
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	return root
}

func syntaxProblem(file string, err error) *Problem {
	msg := err.Error()
	pos := Position{1, 1}
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		if n, convErr := strconv.Atoi(m[1]); convErr == nil {
			// yaml.v3 numbers lines from 1 for scanner errors but from 0
			// for parser errors (and then names the line where the
			// enclosing construct starts).
			if isParserError(m[2]) {
				n++
			}
			pos = Position{Line: n, Column: 1}
		}
		msg = m[2]
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	return &Problem{File: file, Pos: pos, Kind: ErrSyntax, Message: "not valid YAML: " + msg}
}

// isParserError tells yaml.v3's parser errors from its scanner errors by
// their text.
func isParserError(msg string) bool {
	for _, p := range []string{
		"did not find expected <", "did not find expected node content", "did not find expected '-' indicator",
		"did not find expected key", "did not find expected ',' or", "found undefined tag handle",
		"found duplicate %", "found incompatible YAML document",
	} {
		if strings.HasPrefix(msg, p) {
			return true
		}
	}
	return false
}

// decodeFile parses data and decodes it into out (a pointer to a raw
// struct). It returns the source positions and the parsed root node;
// problems go to probs. ok is false when nothing could be decoded (not YAML,
// too large, too complex).
func decodeFile(file string, data []byte, out any, strict bool, probs *problems) (src *source, root *yaml.Node, ok bool) {
	src = &source{file: file, pos: map[string]Position{}}
	root = parseYAML(file, data, probs)
	if root == nil {
		return src, nil, false
	}
	d := &decoder{
		src:     src,
		probs:   probs,
		unknown: SeverityWarning,
		budget:  aliasFactor*countNodes(root) + 1000,
		fields:  map[reflect.Type][]fieldInfo{},
	}
	if strict {
		d.unknown = SeverityError
	}
	d.decode(root, reflect.ValueOf(out).Elem(), "")
	return src, root, !d.exhausted
}

// countNodes counts the nodes as written (aliases are not followed).
func countNodes(n *yaml.Node) int {
	c := 1
	for _, k := range n.Content {
		c += countNodes(k)
	}
	return c
}

func (d *decoder) problem(sev Severity, kind error, n *yaml.Node, path, format string, args ...any) {
	d.probs.add(&Problem{File: d.src.file, Pos: Position{n.Line, n.Column}, Field: path,
		Severity: sev, Kind: kind, Message: fmt.Sprintf(format, args...)})
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
		d.probs.add(&Problem{File: d.src.file, Pos: Position{site.Line, site.Column}, Kind: ErrTooComplex,
			Message: "aliases expand to far more nodes than the file holds; refusing to expand them (write the values out)"})
		return nil
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
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
	d.src.pos[path] = pos
	if isNull(n) {
		return // absent in effect; required-field rules report it
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
			d.problem(SeverityError, ErrType, n, path, "want a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i))
		}
		v.Set(s)
	case reflect.Map:
		d.decodeMap(n, v, path)
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			d.problem(SeverityError, ErrType, n, path, "want text, got %s", describe(n))
			return
		}
		v.SetString(n.Value)
	case reflect.Int, reflect.Int64:
		i, ok := wholeNumber(n)
		if !ok {
			d.problem(SeverityError, ErrType, n, path, "want a whole number, got %s", describe(n))
			return
		}
		v.SetInt(i)
	case reflect.Bool:
		b, ok := parseBool(n)
		if !ok {
			d.problem(SeverityError, ErrType, n, path, "want true or false, got %s", describe(n))
			return
		}
		v.SetBool(b)
	default:
		panic("lessonmeta: decoder does not handle " + v.Type().String())
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
			d.problem(SeverityError, ErrType, k, path, "a key must be a plain name, got %s", describe(k))
			continue
		}
		if prev, dup := seen[k.Value]; dup {
			// yaml.v2 (so Antidote) let the last one win: so do we, and
			// say so (an error under Strict).
			d.problem(d.unknown, ErrDuplicate, k, joinPath(path, k.Value),
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
	d.problem(SeverityError, ErrType, val, path, "`<<` merges a mapping, got %s", describe(val))
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
		d.problem(SeverityError, ErrType, n, path, "want a mapping (key: value lines), got %s", describe(n))
		return
	}
	fields := d.structFields(v.Type())
	var hints map[string]string
	if h, ok := v.Addr().Interface().(keyHinter); ok {
		hints = h.keyHints()
	}
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
			d.unknownKey(p.key, path, key, fields, hints)
			continue
		}
		d.decode(p.value, v.Field(idx), joinPath(path, key))
	}
}

func (d *decoder) unknownKey(k *yaml.Node, path, key string, fields []fieldInfo, hints map[string]string) {
	field := joinPath(path, key)
	if hint, ok := hints[key]; ok {
		d.problem(d.unknown, ErrUnknownKey, k, field, "unknown key; %s", hint)
		return
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	if s := suggest(key, names); s != "" {
		d.problem(d.unknown, ErrUnknownKey, k, field, "unknown key; did you mean %q?", s)
		return
	}
	d.problem(d.unknown, ErrUnknownKey, k, field, "unknown key (known here: %s)", strings.Join(names, ", "))
}

func (d *decoder) decodeMap(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.problem(SeverityError, ErrType, n, path, "want a mapping, got %s", describe(n))
		return
	}
	m := reflect.MakeMap(v.Type())
	for _, p := range d.pairs(n, path) {
		elem := reflect.New(v.Type().Elem()).Elem()
		d.decode(p.value, elem, joinPath(path, p.key.Value))
		m.SetMapIndex(reflect.ValueOf(p.key.Value), elem)
	}
	v.Set(m)
}

// suggest returns the candidate closest to key when it is close enough to be
// a likely typo (case-insensitive match, or a small edit distance), else "".
func suggest(key string, candidates []string) string {
	best, bestDist := "", 1<<30
	lk := strings.ToLower(key)
	limit := max(1, min(3, len(key)/3))
	for i, c := range candidates {
		lc := strings.ToLower(c)
		if lc == lk {
			return c
		}
		// Bound the work: typos are short and close in length, and a
		// hostile file may hold thousands of long names.
		if i >= maxSuggestCandidates || len(lk) > maxSuggestLen || len(lc) > maxSuggestLen || abs(len(lk)-len(lc)) > limit {
			continue
		}
		if dist := editDistance(lk, lc); dist < bestDist {
			best, bestDist = c, dist
		}
	}
	if bestDist <= limit {
		return best
	}
	return ""
}

const (
	maxSuggestCandidates = 200
	maxSuggestLen        = 32
)

func abs(x int) int {
	if x < 0 {
		return -x
	}
	return x
}

// editDistance is the optimal-string-alignment distance between a and b
// (bytes): insertions, deletions, substitutions and swaps of neighbours
// ("imgae") cost 1 each.
func editDistance(a, b string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
