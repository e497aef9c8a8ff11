package lessonmeta

import (
	"cmp"
	"errors"
	"slices"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

// Problem categories. Every [Problem] wraps exactly one of them, so callers
// can test for a category with errors.Is on a single problem or on the
// error returned by Parse, Validate, Load and friends.
var (
	// ErrSyntax: the input is not YAML, or not one YAML document.
	ErrSyntax = errors.New("lessonmeta: syntax error")
	// ErrTooLarge: the input is larger than [MaxFileSize].
	ErrTooLarge = errors.New("lessonmeta: file too large")
	// ErrTooComplex: aliases expand to far more nodes than the file holds
	// (an "alias bomb").
	ErrTooComplex = errors.New("lessonmeta: too many alias expansions")
	// ErrType: a value has the wrong YAML type (a list where a string
	// belongs, text where a number belongs, …).
	ErrType = errors.New("lessonmeta: wrong type")
	// ErrUnknownKey: a key the format does not define. A warning unless
	// Options.Strict is set.
	ErrUnknownKey = errors.New("lessonmeta: unknown key")
	// ErrMissing: a required field is absent or empty.
	ErrMissing = errors.New("lessonmeta: missing field")
	// ErrInvalid: a value breaks a rule (pattern, enum, range, CIDR, …).
	ErrInvalid = errors.New("lessonmeta: invalid value")
	// ErrDuplicate: a key, endpoint name or presentation name given twice.
	ErrDuplicate = errors.New("lessonmeta: duplicate")
	// ErrReference: a name that refers to nothing (connection end,
	// prerequisite lesson, image, collection).
	ErrReference = errors.New("lessonmeta: unknown reference")
	// ErrMissingFile: a stage guide or configuration file is not there.
	ErrMissingFile = errors.New("lessonmeta: missing file")
	// ErrAmbiguous: more than one file could be an endpoint's stage
	// configuration.
	ErrAmbiguous = errors.New("lessonmeta: ambiguous file")
	// ErrLegacyFormat: the file is an older Syringe/Antidote format; convert
	// it with [Migrate].
	ErrLegacyFormat = errors.New("lessonmeta: legacy format")
	// ErrUnsafePath: a path in the file points outside the lesson directory.
	ErrUnsafePath = errors.New("lessonmeta: path escapes the lesson directory")
)

// Severity says whether a problem makes the input invalid.
type Severity int

// Severities.
const (
	SeverityError Severity = iota
	SeverityWarning
)

// String returns "error" or "warning".
func (s Severity) String() string {
	if s == SeverityWarning {
		return "warning"
	}
	return "error"
}

// Position is a place in a file; 1-based, zero when unknown.
type Position struct {
	Line   int `json:"line"`
	Column int `json:"column"`
}

// Problem is one thing wrong with a metafile: where it is, which field, what
// is wrong and what to do. Its Error text is `FILE:LINE:COL: FIELD: MESSAGE`
// (with "warning: " before FIELD for warnings). It unwraps to its category
// (ErrInvalid, ErrMissing, …).
type Problem struct {
	File     string
	Pos      Position
	Field    string // field path such as endpoints[1].presentations[0].port; "" for the whole file
	Message  string
	Severity Severity
	Kind     error // the category sentinel
}

// Error formats the problem as `FILE:LINE:COL: FIELD: MESSAGE`.
func (p *Problem) Error() string {
	return strictyaml.Format(p.File, strictyaml.Position(p.Pos), p.Severity == SeverityWarning, p.Field, p.Message)
}

// Unwrap returns the problem's category.
func (p *Problem) Unwrap() error { return p.Kind }

// Code is a short stable name of the problem's category ("invalid",
// "unknown-key", …), used in JSON output.
func (p *Problem) Code() string { return kindCode(p.Kind) }

func kindCode(kind error) string {
	switch kind {
	case ErrSyntax:
		return "syntax"
	case ErrTooLarge:
		return "too-large"
	case ErrTooComplex:
		return "too-complex"
	case ErrType:
		return "type"
	case ErrUnknownKey:
		return "unknown-key"
	case ErrMissing:
		return "missing"
	case ErrInvalid:
		return "invalid"
	case ErrDuplicate:
		return "duplicate"
	case ErrReference:
		return "reference"
	case ErrMissingFile:
		return "missing-file"
	case ErrAmbiguous:
		return "ambiguous"
	case ErrLegacyFormat:
		return "legacy-format"
	case ErrUnsafePath:
		return "unsafe-path"
	}
	return "other"
}

// ValidationError holds every problem found in one pass over one or more
// files. Its Error text lists the errors, one per line; it unwraps (through
// errors.Join) to each error-severity [Problem], so errors.Is and errors.As
// reach the categories and the problems. Warnings ride along in Problems.
type ValidationError struct {
	// Problems are the errors and warnings, ordered by file and position.
	Problems []*Problem
	joined   error
}

// Error lists the error-severity problems, one per line.
func (e *ValidationError) Error() string { return e.joined.Error() }

// Unwrap returns errors.Join of the error-severity problems.
func (e *ValidationError) Unwrap() error { return e.joined }

// Errors returns the error-severity problems.
func (e *ValidationError) Errors() []*Problem { return filter(e.Problems, SeverityError) }

// Warnings returns the warnings.
func (e *ValidationError) Warnings() []*Problem { return filter(e.Problems, SeverityWarning) }

func filter(ps []*Problem, s Severity) []*Problem {
	var out []*Problem
	for _, p := range ps {
		if p.Severity == s {
			out = append(out, p)
		}
	}
	return out
}

// ProblemsOf returns every problem carried by err: the Problems of a
// *ValidationError (errors and warnings), or each *Problem inside err.
// It returns nil when err carries none.
func ProblemsOf(err error) []*Problem {
	var ve *ValidationError
	if errors.As(err, &ve) {
		return ve.Problems
	}
	var out []*Problem
	var walk func(error)
	walk = func(e error) {
		if p, ok := e.(*Problem); ok {
			out = append(out, p)
			return
		}
		switch u := e.(type) {
		case interface{ Unwrap() []error }:
			for _, x := range u.Unwrap() {
				walk(x)
			}
		case interface{ Unwrap() error }:
			if x := u.Unwrap(); x != nil {
				walk(x)
			}
		}
	}
	if err != nil {
		walk(err)
	}
	return out
}

// problems collects the problems of one pass.
type problems struct {
	list []*Problem
}

func (ps *problems) add(p *Problem) { ps.list = append(ps.list, p) }

func (ps *problems) warnings() []*Problem {
	sortProblems(ps.list)
	return filter(ps.list, SeverityWarning)
}

// err returns a *ValidationError when there is at least one error, else nil.
func (ps *problems) err() error {
	sortProblems(ps.list)
	var errs []error
	for _, p := range ps.list {
		if p.Severity == SeverityError {
			errs = append(errs, p)
		}
	}
	if len(errs) == 0 {
		return nil
	}
	return &ValidationError{Problems: ps.list, joined: errors.Join(errs...)}
}

func sortProblems(ps []*Problem) {
	slices.SortStableFunc(ps, func(a, b *Problem) int {
		return cmp.Or(
			cmp.Compare(a.File, b.File),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Column, b.Pos.Column),
		)
	})
}
