package lessonmeta

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
)

// Metafile names of a curriculum.
const (
	CollectionFile = "collection.meta.yaml"
	CurriculumFile = "curriculum.meta.yaml"
)

// Collection is a validated collection.meta.yaml.
type Collection struct {
	Slug             string
	Title            string
	Image            string
	Website          string
	ContactEmail     string
	BriefDescription string
	LongDescription  string
	Type             string // vendor, community or consultancy
	Tier             Tier
	File             string
	Warnings         []*Problem
}

// CurriculumMeta is a validated curriculum.meta.yaml.
type CurriculumMeta struct {
	Name        string
	Description string
	Website     string
	AVer        string // the Antidote version the curriculum targets
	GitRoot     string
	File        string
	Warnings    []*Problem
}

// ParseCollection decodes and validates collection.meta.yaml contents.
func ParseCollection(file string, data []byte, opts Options) (*Collection, error) {
	raw, c, err := decodeChecked[RawCollection](file, data, opts)
	if c == nil {
		return nil, err
	}
	if c.required("slug", raw.Slug, "the collection's ID") && !slugRE.MatchString(raw.Slug) {
		c.errf(ErrInvalid, "slug", "%q may hold only lower-case letters and hyphens (try %q)", raw.Slug, slugify(raw.Slug))
	}
	c.required("title", raw.Title, "a title")
	c.required("image", raw.Image, "a logo URL")
	c.required("website", raw.Website, "a website URL")
	c.required("contactEmail", raw.ContactEmail, "a contact address")
	c.required("briefDescription", raw.BriefDescription, "a one-line description")
	c.required("longDescription", raw.LongDescription, "a description")
	c.enum("type", raw.Type, []string{"vendor", "community", "consultancy"}, nil)
	c.enum("tier", raw.Tier, []string{"prod", "ptr", "local"}, nil)
	if err := c.probs.err(); err != nil {
		return nil, err
	}
	return &Collection{
		Slug: raw.Slug, Title: raw.Title, Image: raw.Image, Website: raw.Website, ContactEmail: raw.ContactEmail,
		BriefDescription: raw.BriefDescription, LongDescription: raw.LongDescription, Type: raw.Type, Tier: Tier(raw.Tier),
		File: file, Warnings: c.probs.warnings(),
	}, nil
}

// ParseCurriculumMeta decodes and validates curriculum.meta.yaml contents.
func ParseCurriculumMeta(file string, data []byte, opts Options) (*CurriculumMeta, error) {
	raw, c, err := decodeChecked[RawCurriculum](file, data, opts)
	if c == nil {
		return nil, err
	}
	c.required("name", raw.Name, "the curriculum's name")
	c.required("description", raw.Description, "a description")
	c.required("website", raw.Website, "a website URL")
	c.required("aVer", raw.AVer, "the Antidote version the curriculum targets")
	c.required("gitRoot", raw.GitRoot, "the curriculum's git repository URL")
	if err := c.probs.err(); err != nil {
		return nil, err
	}
	return &CurriculumMeta{Name: raw.Name, Description: raw.Description, Website: raw.Website,
		AVer: raw.AVer, GitRoot: raw.GitRoot, File: file, Warnings: c.probs.warnings()}, nil
}

// Curriculum is everything read from a curriculum directory (lessons/,
// images/, collections/, curriculum.meta.yaml).
type Curriculum struct {
	Dir         string
	Meta        *CurriculumMeta // nil when there is no valid curriculum.meta.yaml
	Images      map[string]*Image
	Collections map[string]*Collection
	Lessons     []*Lesson // the valid ones, in path order
	// LessonFiles lists every lesson metafile found, valid or not.
	LessonFiles []string
	// Warnings of every file and of the cross-checks.
	Warnings []*Problem
}

// IsCurriculum reports whether dir looks like a curriculum: it has a
// lessons/ directory and is not itself a lesson.
func IsCurriculum(dir string) bool {
	if _, err := os.Stat(filepath.Join(dir, LessonFile)); err == nil {
		return false
	}
	st, err := os.Stat(filepath.Join(dir, "lessons"))
	return err == nil && st.IsDir()
}

// FindCurriculumRoot returns the curriculum directory that holds the lesson
// in lessonDir: the parent of the nearest ancestor named "lessons" (lessons
// may sit at any depth under it). ok is false when there is none.
func FindCurriculumRoot(lessonDir string) (root string, ok bool) {
	abs, err := filepath.Abs(lessonDir)
	if err != nil {
		return "", false
	}
	for d := filepath.Dir(abs); d != filepath.Dir(d); d = filepath.Dir(d) {
		if filepath.Base(d) == "lessons" {
			return filepath.Dir(d), true
		}
	}
	return "", false
}

// LoadCurriculum reads and checks a whole curriculum, as `antidote
// validate` does, and more: every image, collection and lesson metafile;
// each lesson's images (a missing image.meta.yaml is a warning), unique
// lesson slugs, prerequisites that exist in the curriculum (error) and
// collections that exist (warning). Unless opts.Images is set, images are
// looked up in dir/images.
//
// The Curriculum is returned even when err is non-nil (a
// *ValidationError listing every problem), holding what was valid.
func LoadCurriculum(dir string, opts Options) (*Curriculum, error) {
	cur := &Curriculum{Dir: dir, Images: map[string]*Image{}, Collections: map[string]*Collection{}}
	if !IsCurriculum(dir) {
		return cur, fmt.Errorf("lessonmeta: %s is not a curriculum directory (no lessons/ folder)", dir)
	}
	var probs problems
	// collect adds a file's warnings, or the problems of its error (an
	// I/O error becomes a problem of that file).
	collect := func(file string, warnings []*Problem, err error) {
		if err == nil {
			probs.list = append(probs.list, warnings...)
			return
		}
		if ps := ProblemsOf(err); len(ps) > 0 {
			probs.list = append(probs.list, ps...)
			return
		}
		probs.add(&Problem{File: file, Kind: ErrMissingFile, Message: err.Error()})
	}
	if file := filepath.Join(dir, CurriculumFile); fileExists(file) {
		data, err := ReadFile(file)
		if err == nil {
			cur.Meta, err = ParseCurriculumMeta(file, data, opts)
		}
		if cur.Meta != nil {
			collect(file, cur.Meta.Warnings, nil)
		} else {
			collect(file, nil, err)
		}
	} else {
		probs.add(&Problem{File: file, Severity: SeverityWarning, Kind: ErrMissingFile,
			Message: "no curriculum.meta.yaml (name, description, website, aVer, gitRoot); Antidote needs one"})
	}
	imgDirs, _ := os.ReadDir(filepath.Join(dir, "images"))
	for _, e := range imgDirs {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue
		}
		file := filepath.Join(dir, "images", e.Name(), ImageFile)
		if !fileExists(file) {
			probs.add(&Problem{File: filepath.Join(dir, "images", e.Name()), Severity: SeverityWarning, Kind: ErrMissingFile,
				Message: fmt.Sprintf("no %s: lessons using image %q cannot launch until it has one", ImageFile, e.Name())})
			continue
		}
		im, err := LoadImage(file, opts)
		if im == nil {
			collect(file, nil, err)
			continue
		}
		collect(file, im.Warnings, nil)
		if im.Slug != e.Name() {
			probs.add(&Problem{File: file, Pos: Position{1, 1}, Field: "slug", Severity: SeverityWarning, Kind: ErrInvalid,
				Message: fmt.Sprintf("slug %q differs from the directory name %q; lessons find images by directory", im.Slug, e.Name())})
		}
		cur.Images[im.Slug] = im
	}
	colDirs, _ := os.ReadDir(filepath.Join(dir, "collections"))
	for _, e := range colDirs {
		file := filepath.Join(dir, "collections", e.Name(), CollectionFile)
		if !e.IsDir() || !fileExists(file) {
			continue
		}
		data, err := ReadFile(file)
		var col *Collection
		if err == nil {
			col, err = ParseCollection(file, data, opts)
		}
		if col == nil {
			collect(file, nil, err)
			continue
		}
		collect(file, col.Warnings, nil)
		cur.Collections[col.Slug] = col
	}
	lopts := opts
	if lopts.Images == nil {
		lopts.Images = ImageDirs{filepath.Join(dir, "images")}
	}
	_ = filepath.WalkDir(filepath.Join(dir, "lessons"), func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			probs.add(&Problem{File: p, Kind: ErrMissingFile, Message: err.Error()})
			return nil
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != filepath.Join(dir, "lessons") {
			return filepath.SkipDir
		}
		if d.IsDir() || d.Name() != LessonFile {
			return nil
		}
		cur.LessonFiles = append(cur.LessonFiles, p)
		l, err := Load(p, lopts)
		if l == nil {
			collect(p, nil, err)
			return nil
		}
		collect(p, l.Warnings, nil)
		cur.Lessons = append(cur.Lessons, l)
		return nil
	})
	cur.crossCheck(&probs)
	cur.Warnings = probs.warnings()
	return cur, probs.err()
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && st.Mode().IsRegular()
}

// crossCheck applies the curriculum-wide rules to the valid lessons.
func (cur *Curriculum) crossCheck(probs *problems) {
	slugs := map[string]*Lesson{}
	for _, l := range cur.Lessons {
		if prev, dup := slugs[l.Slug]; dup {
			probs.add(&Problem{File: l.File, Pos: l.Position("slug"), Field: "slug", Kind: ErrDuplicate,
				Message: fmt.Sprintf("lesson slug %q is already used by %s", l.Slug, prev.File)})
			continue
		}
		slugs[l.Slug] = l
	}
	all := make([]string, 0, len(slugs))
	for s := range slugs {
		all = append(all, s)
	}
	slices.Sort(all)
	suggested := 0
	for _, l := range cur.Lessons {
		for i, p := range l.Prereqs {
			if _, ok := slugs[p]; ok {
				continue
			}
			field := fmt.Sprintf("prereqs[%d]", i)
			msg := fmt.Sprintf("no lesson in this curriculum has the slug %q", p)
			suggested++
			if suggested > maxSuggestions {
				// enough help for one curriculum
			} else if s := strictyaml.Suggest(p, all); s != "" {
				msg += fmt.Sprintf("; did you mean %q?", s)
			}
			probs.add(&Problem{File: l.File, Pos: l.Position(field), Field: field, Kind: ErrReference, Message: msg})
		}
		if l.Collection != "" {
			if _, ok := cur.Collections[l.Collection]; !ok {
				probs.add(&Problem{File: l.File, Pos: l.Position("collection"), Field: "collection", Severity: SeverityWarning, Kind: ErrReference,
					Message: fmt.Sprintf("no collection %q in %s", l.Collection, filepath.Join(cur.Dir, "collections"))})
			}
		}
	}
}
