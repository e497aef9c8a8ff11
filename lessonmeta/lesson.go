package lessonmeta

import (
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

// LessonFile is the name of a lesson's metafile.
const LessonFile = "lesson.meta.yaml"

// DefaultSubnet is the subnet antidote-core gives a connection without one.
// No addresses are planned from it.
const DefaultSubnet = "169.0.0.0/16"

// Size limits of a lesson, far above any real one (NRE Labs lessons have at
// most six stages and six endpoints); they keep a hostile file from making
// validation or migration do quadratic work.
const (
	MaxStages      = 100
	MaxEndpoints   = 1000
	MaxConnections = 4000
)

// Category is a lesson's category.
type Category string

// Categories.
const (
	CategoryFundamentals Category = "fundamentals"
	CategoryTools        Category = "tools"
	CategoryWorkflows    Category = "workflows"
)

// Tier says where a lesson is shown: prod > ptr > local.
type Tier string

// Tiers.
const (
	TierProd  Tier = "prod"
	TierPTR   Tier = "ptr"
	TierLocal Tier = "local"
)

// GuideType is the kind of a stage's guide.
type GuideType string

// Guide types.
const (
	GuideMarkdown GuideType = "markdown" // stage<i>/guide.md
	GuideJupyter  GuideType = "jupyter"  // stage<i>/guide.ipynb
)

// ConfigurationType says how each stage configures an endpoint.
type ConfigurationType string

// Configuration types. Netconf and SSH are endpointkit extensions, not part
// of the Antidote format.
const (
	ConfigNone    ConfigurationType = ""        // not configured
	ConfigNapalm  ConfigurationType = "napalm"  // stage<i>/configs/<ep>-<driver>.txt
	ConfigPython  ConfigurationType = "python"  // stage<i>/configs/<ep>.py
	ConfigAnsible ConfigurationType = "ansible" // stage<i>/configs/<ep>.yml (or .yaml)
	ConfigNetconf ConfigurationType = "netconf" // extension: stage<i>/configs/<ep>.xml (edit-config payload)
	ConfigSSH     ConfigurationType = "ssh"     // extension: stage<i>/configs/<ep>.sh (run over SSH)
)

// PresentationType is how a presentation is shown.
type PresentationType string

// Presentation types.
const (
	PresentationSSH  PresentationType = "ssh"
	PresentationHTTP PresentationType = "http"
)

// NapalmDrivers returns the NAPALM drivers a napalm config file may name,
// as in <ep>-<driver>.txt.
func NapalmDrivers() []string {
	return []string{"junos", "eos", "iosxr", "nxos", "nxos_ssh", "ios"}
}

// Lesson is a validated, defaulted lesson.
type Lesson struct {
	Slug             string
	Name             string
	Category         Category
	Tier             Tier
	Description      string
	ShortDescription string
	Diagram          string
	Video            string
	Collection       string
	Prereqs          []string
	Tags             []string
	Authors          []Author
	ReadyDelay       time.Duration

	Stages      []Stage
	Endpoints   []Endpoint
	Connections []Connection

	// File is the metafile's path as given; Dir is the lesson directory,
	// absolute.
	File string
	Dir  string
	// FilesChecked says guides and config files were resolved (Validate
	// was given the lesson directory); otherwise Stage.Guide and
	// Endpoint.Configs are empty.
	FilesChecked bool

	// Warnings are the problems that do not make the lesson invalid.
	Warnings []*Problem

	src *source
}

// ErrNoStage is wrapped by every error about a stage number the lesson
// does not have (see [Lesson.CheckStage]).
var ErrNoStage = errors.New("no such stage")

// CheckStage returns nil when the lesson has stage n, else an error naming
// the file and the stages field that wraps [ErrNoStage]. It is the one
// check of a stage number against a lesson.
func (l *Lesson) CheckStage(n int) error {
	if n >= 0 && n < len(l.Stages) {
		return nil
	}
	pos := l.Position("stages")
	return fmt.Errorf("%s:%d:%d: stages: stage %d: the lesson has stages 0 to %d: %w", l.File, pos.Line, pos.Column, n, len(l.Stages)-1, ErrNoStage)
}

// Position returns where field (a path such as "endpoints[1].image") is
// written in the metafile, or where its nearest written parent is.
func (l *Lesson) Position(field string) Position {
	if l.src == nil {
		return Position{}
	}
	return l.src.at(field)
}

// Endpoint returns the endpoint named name, or nil.
func (l *Lesson) Endpoint(name string) *Endpoint {
	for i := range l.Endpoints {
		if l.Endpoints[i].Name == name {
			return &l.Endpoints[i]
		}
	}
	return nil
}

// Author is a lesson author.
type Author struct {
	Name string
	Link string
}

// Stage is one stage of a lesson.
type Stage struct {
	Index       int
	Description string
	GuideType   GuideType
	Video       string
	// Guide is the absolute path of the stage's guide (when files were
	// checked).
	Guide string
}

// Endpoint is one endpoint of a lesson.
type Endpoint struct {
	Index             int
	Name              string
	Image             string
	ConfigurationType ConfigurationType
	Presentations     []Presentation
	AdditionalPorts   []int
	// Configs holds, for a configured endpoint whose files were checked,
	// one entry per stage (Configs[i].Stage == i).
	Configs []ConfigFile
}

// Presentation is one way a learner reaches an endpoint.
type Presentation struct {
	Name string
	Port int
	Type PresentationType
}

// ConfigFile is an endpoint's configuration file for one stage.
type ConfigFile struct {
	Stage int
	// Path is absolute; Rel is relative to the lesson directory
	// (stage<i>/configs/<file>).
	Path string
	Rel  string
	// Driver is the NAPALM driver of a napalm file, else "".
	Driver string
}

// Connection is one cable between two endpoints.
type Connection struct {
	Index int
	A, B  string
	// Subnet is the connection's subnet (masked); DefaultSubnet when the
	// lesson gives none, and then SubnetExplicit is false.
	Subnet         netip.Prefix
	SubnetExplicit bool
}

// ImageSource looks up image metadata by slug. It returns an error
// wrapping [ErrNoImage] when it has no such image. [ImageDirs] is the usual
// implementation.
type ImageSource interface {
	Image(slug string) (*Image, error)
}

// Options tune Parse, Validate and the Load functions. The zero value is the
// default: unknown keys are warnings, images are not looked up.
type Options struct {
	// Strict makes unknown keys errors.
	Strict bool
	// Images, when set, is asked for each endpoint's image; an image it
	// does not have is a warning (the lesson is valid, launching it needs
	// the image).
	Images ImageSource
}

// parsed is what Parse learned beyond the raw values.
type parsed struct {
	src      *source
	problems []*Problem
}

// Parse decodes lesson.meta.yaml contents strictly into a [RawLesson]
// (the first layer): every YAML or type problem and every unknown key is
// reported, with its position, in one pass. file names the input in
// problems and places the lesson directory for [Validate].
//
// The returned RawLesson is nil only when nothing could be decoded (not
// YAML, too large, alias bomb); otherwise it is returned even with an error,
// so Validate can report the remaining problems in the same pass.
func Parse(file string, data []byte, opts Options) (*RawLesson, error) {
	var probs problems
	raw := &RawLesson{}
	src, root, ok := decodeFile(file, data, raw, opts.Strict, &probs)
	if root != nil {
		if f := detectFormat(root); f != FormatCurrent {
			probs.add(&Problem{File: file, Pos: Position{root.Line, root.Column}, Kind: ErrLegacyFormat,
				Message: fmt.Sprintf("this is the %s format; convert it with `lesson migrate %s`", f, file)})
		}
	}
	if !ok {
		return nil, probs.err()
	}
	raw.meta = &parsed{src: src, problems: probs.list}
	return raw, probs.err()
}

// Validate is the second layer: it checks raw against every rule, applies
// defaults and returns the [Lesson]. The problems Parse found are reported
// again, with the new ones, so one call reports everything.
//
// lessonDir, when non-nil, is the lesson directory: the stage guides and
// per-stage config files are then checked and resolved (absolute paths are
// built from the directory of the file given to Parse). With a nil
// lessonDir only the metafile is checked.
func Validate(raw *RawLesson, lessonDir fs.FS, opts Options) (*Lesson, error) {
	if raw == nil {
		return nil, errors.New("lessonmeta: Validate of a nil RawLesson")
	}
	c := newChecker(raw)
	l := c.lesson(raw)
	if lessonDir != nil && !c.tooBig {
		c.files(l, lessonDir)
	}
	if opts.Images != nil {
		c.images(l, opts.Images)
	}
	if err := c.probs.err(); err != nil {
		return nil, err
	}
	l.Warnings = c.probs.warnings()
	return l, nil
}

// Load reads, parses and validates a lesson: path is a lesson directory
// (holding lesson.meta.yaml) or the metafile itself. Guides and config
// files are checked against the directory.
func Load(path string, opts Options) (*Lesson, error) {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, LessonFile)
		if _, err := os.Stat(file); errors.Is(err, fs.ErrNotExist) {
			if _, serr := os.Stat(filepath.Join(path, "syringe.yaml")); serr == nil {
				return nil, &Problem{File: filepath.Join(path, "syringe.yaml"), Pos: Position{1, 1}, Kind: ErrLegacyFormat,
					Message: "a Syringe lesson (syringe.yaml); convert it with `lesson migrate " + path + "`"}
			}
		}
	}
	data, err := ReadFile(file)
	if errors.Is(err, syscall.ELOOP) {
		return nil, symlinkLoop(path)
	}
	if err != nil {
		return nil, err
	}
	raw, perr := Parse(file, data, opts)
	if raw == nil {
		return nil, perr
	}
	abs, err := filepath.Abs(filepath.Dir(file))
	if err != nil {
		return nil, err
	}
	return Validate(raw, os.DirFS(abs), opts)
}

// ReadFile reads a metafile, refusing files over [MaxFileSize] without
// reading them whole.
func ReadFile(path string) ([]byte, error) {
	data, tooLarge, err := strictyaml.ReadFile(path, strictyaml.Options{Document: metafile})
	if err != nil {
		return nil, fmt.Errorf("lessonmeta: %w", err)
	}
	if tooLarge != nil {
		return nil, &Problem{File: path, Kind: ErrTooLarge, Message: tooLarge.Message}
	}
	return data, nil
}
