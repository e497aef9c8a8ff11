package strictyaml

import (
	"cmp"
	"slices"
	"strconv"
	"strings"
)

// Kind is the category of a [Problem]; callers map it to their own error
// sentinels.
type Kind int

// Problem categories.
const (
	// Syntax: the input is not YAML.
	Syntax Kind = iota + 1
	// ExtraDocument: a second, non-empty YAML document (always a warning).
	ExtraDocument
	// TooLarge: the input is larger than [MaxSize].
	TooLarge
	// TooComplex: aliases expand to far more nodes than the file holds.
	TooComplex
	// Type: a value of the wrong YAML type.
	Type
	// UnknownKey: a key the target struct does not define.
	UnknownKey
	// Duplicate: a key given twice in one mapping.
	Duplicate
)

// String returns a short name such as "unknown-key".
func (k Kind) String() string {
	switch k {
	case Syntax:
		return "syntax"
	case ExtraDocument:
		return "extra-document"
	case TooLarge:
		return "too-large"
	case TooComplex:
		return "too-complex"
	case Type:
		return "type"
	case UnknownKey:
		return "unknown-key"
	case Duplicate:
		return "duplicate"
	}
	return "kind(" + strconv.Itoa(int(k)) + ")"
}

// Position is a place in a file; 1-based, zero when unknown.
type Position struct {
	Line, Column int
}

// Problem is one thing wrong with a file.
type Problem struct {
	Pos     Position // zero for the whole file (TooLarge)
	Field   string   // field path such as users[0].name; "" for the whole file
	Kind    Kind
	Warning bool // the input is still usable
	Message string
}

// Format renders a located message the one way the module's file formats
// do: `FILE:LINE:COL: warning: FIELD: MESSAGE`. LINE:COL is left out when
// pos.Line is 0, "warning: " unless warning is set, FIELD when it is "".
func Format(file string, pos Position, warning bool, field, msg string) string {
	var b strings.Builder
	b.Grow(len(file) + len(field) + len(msg) + 24)
	b.WriteString(file)
	if pos.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(pos.Line))
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(pos.Column))
	}
	b.WriteString(": ")
	if warning {
		b.WriteString("warning: ")
	}
	if field != "" {
		b.WriteString(field)
		b.WriteString(": ")
	}
	b.WriteString(msg)
	return b.String()
}

// sortProblems orders problems by position, keeping the order of those at
// the same place.
func sortProblems(ps []Problem) {
	slices.SortStableFunc(ps, func(a, b Problem) int {
		return cmp.Or(cmp.Compare(a.Pos.Line, b.Pos.Line), cmp.Compare(a.Pos.Column, b.Pos.Column))
	})
}

// Positions maps a field path ("users[0].name", "" for the root) to where
// its value was written.
type Positions map[string]Position

// At returns the position of path, or of its nearest ancestor written in
// the file (so a missing field is reported where its parent mapping
// starts); zero when there is none.
func (ps Positions) At(path string) Position {
	for {
		if p, ok := ps[path]; ok {
			return p
		}
		if path == "" {
			return Position{}
		}
		path = Parent(path)
	}
}

// Has reports whether path was written in the file (even as null).
func (ps Positions) Has(path string) bool {
	_, ok := ps[path]
	return ok
}

// Parent returns the path of the field or list that holds path:
// "a.b[2]" → "a.b" → "a" → "".
func Parent(path string) string {
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// Join returns the path of key inside the mapping at parent.
func Join(parent, key string) string {
	if parent == "" {
		return key
	}
	return parent + "." + key
}
