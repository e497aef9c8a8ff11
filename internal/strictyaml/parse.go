package strictyaml

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"unicode/utf16"

	"gopkg.in/yaml.v3"
)

// MaxSize is the largest input accepted, in bytes (1 MiB). Larger inputs
// are refused with a TooLarge problem before any parsing.
const MaxSize = 1 << 20

// Parse parses data into the root node of its single document (an empty
// mapping at 1:1 when data holds no document). It returns a nil root, with
// the problem, when data is larger than [MaxSize] or not YAML; a second
// non-empty document is a warning and is ignored, as yaml.v2 did.
func Parse(data []byte, opts Options) (root *yaml.Node, probs []Problem) {
	if len(data) > MaxSize {
		return nil, []Problem{{Kind: TooLarge, Message: fmt.Sprintf(
			"%d bytes; %s may be at most %d bytes (1 MiB)", len(data), opts.document(), MaxSize)}}
	}
	defer func() {
		if r := recover(); r != nil { // yaml.v3 has panicked on odd input before
			root = nil
			probs = append(probs, Problem{Pos: Position{1, 1}, Kind: Syntax,
				Message: fmt.Sprintf("the YAML parser failed: %v", r)})
		}
	}()
	if m := newEditorLines(data); m != nil {
		defer func() {
			m.renumber(root)
			for i := range probs {
				if probs[i].Pos.Line > 0 {
					probs[i].Pos = m.at(probs[i].Pos)
				}
			}
		}()
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map", Line: 1, Column: 1}, nil
	}
	if err != nil {
		return nil, []Problem{syntaxProblem(err)}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		if len(extra.Content) > 0 && !isNull(extra.Content[0]) {
			probs = append(probs, Problem{Pos: Position{extra.Line, extra.Column}, Kind: ExtraDocument, Warning: true,
				Message: fmt.Sprintf("a second YAML document is ignored; %s holds one (remove the extra `---` and what follows)", opts.document())})
		}
	} else if !errors.Is(err, io.EOF) {
		probs = append(probs, syntaxProblem(err))
	}
	root = &doc
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
	}
	return root, probs
}

// ReadFile reads the file at path, refusing one over [MaxSize] without
// reading it whole: it then returns a TooLarge problem instead of data.
// err is os.Open's error, or a read error prefixed with path.
func ReadFile(path string, opts Options) (data []byte, tooLarge *Problem, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	data, err = io.ReadAll(io.LimitReader(f, MaxSize+1))
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(data) > MaxSize {
		return nil, &Problem{Kind: TooLarge, Message: fmt.Sprintf(
			"larger than %d bytes (1 MiB); %s is never that big", MaxSize, opts.document())}, nil
	}
	return data, nil, nil
}

var yamlLineRE = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// syntaxProblem turns a yaml.v3 parse error into a positioned problem.
func syntaxProblem(err error) Problem {
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
	return Problem{Pos: pos, Kind: Syntax, Message: "not valid YAML: " + msg}
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

// Result is what [Unmarshal] learned about an input.
type Result struct {
	// Root is the document's root node; nil when the input is too large
	// or not YAML.
	Root *yaml.Node
	// Positions are where each decoded field was written.
	Positions Positions
	// Problems are every problem found, ordered by position.
	Problems []Problem
	// Decoded says out holds the input's values. It is false when nothing
	// could be decoded: the input is too large, not YAML, or an alias bomb.
	Decoded bool
}

// Unmarshal parses data ([Parse]) and decodes its root node into out, a
// pointer to a struct ([Decode]).
func Unmarshal(data []byte, out any, opts Options) Result {
	root, probs := Parse(data, opts)
	res := Result{Root: root, Problems: probs}
	if root == nil {
		res.Positions = Positions{}
		return res
	}
	var more []Problem
	res.Positions, more, res.Decoded = Decode(root, out, opts)
	res.Problems = append(res.Problems, more...)
	sortProblems(res.Problems)
	return res
}

// Lines counts the lines of data as an editor shows them (LF, CR and CRLF
// end a line; UTF-16 is decoded after its byte order mark). Every
// problem's line is at most Lines(data)+1: an error at the end of the
// input may name the line after the last.
func Lines(data []byte) int {
	n := 1
	for _, r := range yamlText(data) {
		if r == '\n' || r == '\r' {
			n++
		}
	}
	return n
}

// yamlText is data as yaml.v3 reads it: decoded from UTF-16 after a byte
// order mark, CRLF folded to LF.
func yamlText(data []byte) string {
	text := string(data)
	if len(data) >= 2 && (data[0] == 0xfe && data[1] == 0xff || data[0] == 0xff && data[1] == 0xfe) {
		units := make([]uint16, 0, len(data)/2)
		for i := 2; i+1 < len(data); i += 2 {
			if data[0] == 0xfe {
				units = append(units, uint16(data[i])<<8|uint16(data[i+1]))
			} else {
				units = append(units, uint16(data[i+1])<<8|uint16(data[i]))
			}
		}
		text = string(utf16.Decode(units))
	}
	return strings.ReplaceAll(text, "\r\n", "\n")
}

func isYAMLBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\u0085', '\u2028', '\u2029':
		return true
	}
	return false
}

// editorLines maps yaml.v3's line:col to an editor's, which breaks lines
// only at LF, CR and CRLF: entry i is where yaml line i+1 starts, as an
// editor line and the editor column before its first character. It is nil
// when data has no NEL, LS or PS, and the two numberings agree.
type editorLines []Position

func newEditorLines(data []byte) editorLines {
	if !bytes.Contains(data, []byte("\u0085")) && !bytes.Contains(data, []byte("\u2028")) &&
		!bytes.Contains(data, []byte("\u2029")) && !(len(data) >= 2 && (data[0] == 0xfe || data[0] == 0xff)) {
		return nil
	}
	m := editorLines{{Line: 1}}
	line, col, odd := 1, 0, false
	for _, r := range yamlText(data) {
		switch {
		case r == '\n' || r == '\r':
			line, col = line+1, 0
		case isYAMLBreak(r):
			col++
			odd = true
		default:
			col++
			continue
		}
		m = append(m, Position{Line: line, Column: col})
	}
	if !odd {
		return nil
	}
	return m
}

// at converts yaml.v3's p into the editor's line:col.
func (m editorLines) at(p Position) Position {
	if p.Line < 1 {
		return p
	}
	if p.Line > len(m) { // past the end of the input
		return Position{Line: m[len(m)-1].Line + p.Line - len(m), Column: p.Column}
	}
	start := m[p.Line-1]
	return Position{Line: start.Line, Column: start.Column + p.Column}
}

// renumber rewrites the positions of n and every node below it.
func (m editorLines) renumber(n *yaml.Node) {
	if n == nil {
		return
	}
	p := m.at(Position{n.Line, n.Column})
	n.Line, n.Column = p.Line, p.Column
	for _, c := range n.Content {
		m.renumber(c)
	}
}
