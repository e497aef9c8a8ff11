package lessonmeta

import (
	"reflect"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
	"gopkg.in/yaml.v3"
)

// MaxFileSize is the largest metafile accepted, in bytes. Larger inputs are
// refused with [ErrTooLarge] before any parsing.
const MaxFileSize = strictyaml.MaxSize

// metafile names a metafile in the decoder's messages.
const metafile = "a metafile"

// source remembers where each field of a decoded file was written.
type source struct {
	file string
	pos  strictyaml.Positions // field path → position of its value
}

// at returns the position of path, or of its nearest present ancestor (so a
// missing field is reported where its parent mapping starts), or 1:1.
func (s *source) at(path string) Position {
	if p := s.pos.At(path); p.Line > 0 {
		return Position(p)
	}
	return Position{Line: 1, Column: 1}
}

// has reports whether path was written in the file.
func (s *source) has(path string) bool { return s.pos.Has(path) }

// keyHinter is implemented by raw types that know keys of older formats, to
// say what replaced them instead of guessing.
type keyHinter interface {
	keyHints() map[string]string
}

// keyHint is the decoder's Options.Hint: the keyHints of raw type t.
func keyHint(t reflect.Type, key string) (string, bool) {
	h, ok := reflect.New(t).Interface().(keyHinter)
	if !ok {
		return "", false
	}
	hint, ok := h.keyHints()[key]
	return hint, ok
}

// kindOf maps the decoder's problem categories to the package's sentinels.
func kindOf(k strictyaml.Kind) error {
	switch k {
	case strictyaml.TooLarge:
		return ErrTooLarge
	case strictyaml.TooComplex:
		return ErrTooComplex
	case strictyaml.Type:
		return ErrType
	case strictyaml.UnknownKey:
		return ErrUnknownKey
	case strictyaml.Duplicate:
		return ErrDuplicate
	}
	return ErrSyntax // Syntax, ExtraDocument
}

// addAll records the decoder's problems as file's.
func (ps *problems) addAll(file string, found []strictyaml.Problem) {
	for _, p := range found {
		sev := SeverityError
		if p.Warning {
			sev = SeverityWarning
		}
		ps.add(&Problem{File: file, Pos: Position(p.Pos), Field: p.Field, Message: p.Message, Severity: sev, Kind: kindOf(p.Kind)})
	}
}

// parseYAML parses data into a single document node. It returns nil and
// records a problem when the input is too large or not YAML. An empty input
// yields an empty mapping.
func parseYAML(file string, data []byte, probs *problems) *yaml.Node {
	root, found := strictyaml.Parse(data, strictyaml.Options{Document: metafile})
	probs.addAll(file, found)
	return root
}

// decodeFile parses data and decodes it into out (a pointer to a raw
// struct). It returns the source positions and the parsed root node;
// problems go to probs. ok is false when nothing could be decoded (not YAML,
// too large, too complex).
func decodeFile(file string, data []byte, out any, strict bool, probs *problems) (src *source, root *yaml.Node, ok bool) {
	res := strictyaml.Unmarshal(data, out, strictyaml.Options{Document: metafile, Strict: strict, Hint: keyHint})
	probs.addAll(file, res.Problems)
	return &source{file: file, pos: res.Positions}, res.Root, res.Decoded
}
