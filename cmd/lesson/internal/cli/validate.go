package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/endpointkit/endpointkit/lessonjson"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

func validateCommand() *Command {
	return &Command{
		Name:    "validate",
		Args:    "[--strict] [--json] [--images DIR]... PATH...",
		Summary: "check lessons (or whole curricula) against every rule",
		Help: `
Checks each PATH, a lesson directory (holding lesson.meta.yaml), a
lesson.meta.yaml file, or a curriculum directory (holding lessons/, images/,
collections/), and prints every problem as FILE:LINE:COL: FIELD: MESSAGE.
Exits 1 if any PATH has an error.

Unknown keys are warnings (errors with --strict). An image without an
image.meta.yaml is a warning: the lesson is valid, launching it needs the
image. Images are looked up in each --images DIR and in the images/ folder of
the curriculum the lesson sits in (the parent of its "lessons" ancestor).
Prerequisites are checked when a whole curriculum is validated.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			strict := fs.Bool("strict", false, "treat unknown keys as errors")
			asJSON := fs.Bool("json", false, "print one JSON document (version 1) to stdout")
			var images stringList
			fs.Var(&images, "images", "a directory of image directories (`DIR`/<slug>/image.meta.yaml); repeatable")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return fmt.Errorf("%w: give at least one PATH", ErrUsage)
				}
				return runValidate(env, args, lessonmeta.Options{Strict: *strict}, images, *asJSON)
			}
		},
	}
}

func runValidate(env *Env, paths []string, opts lessonmeta.Options, images []string, asJSON bool) error {
	out := lessonjson.Validation{Version: lessonjson.Version, OK: true, Targets: []lessonjson.Target{}}
	for _, path := range paths {
		t := validateTarget(path, opts, images)
		out.OK = out.OK && t.OK
		out.Targets = append(out.Targets, t)
		if asJSON {
			continue
		}
		for _, p := range t.Problems {
			fmt.Fprintln(env.Stderr, p.String())
		}
		switch {
		case !t.OK:
			fmt.Fprintf(env.Stdout, "%s: invalid (%d errors, %d warnings)\n", path, t.Errors, t.Warnings)
		case t.Kind == "curriculum":
			fmt.Fprintf(env.Stdout, "%s: ok, curriculum of %d lessons (%d warnings)\n", path, len(t.Lessons), t.Warnings)
		default:
			fmt.Fprintf(env.Stdout, "%s: ok, lesson %s (%d warnings)\n", path, t.Lessons[0], t.Warnings)
		}
	}
	if asJSON {
		if err := writeJSON(env.Stdout, out); err != nil {
			return err
		}
	}
	if !out.OK {
		return errReported
	}
	return nil
}

func validateTarget(path string, opts lessonmeta.Options, images []string) lessonjson.Target {
	t := lessonjson.Target{Path: path, Kind: "lesson", Lessons: []string{}, Problems: []lessonjson.Problem{}}
	var warnings []*lessonmeta.Problem
	var err error
	if lessonmeta.IsCurriculum(path) {
		t.Kind = "curriculum"
		if len(images) > 0 {
			opts.Images = append(lessonmeta.ImageDirs(images), filepath.Join(path, "images"))
		}
		var cur *lessonmeta.Curriculum
		cur, err = lessonmeta.LoadCurriculum(path, opts)
		warnings = cur.Warnings
		for _, l := range cur.Lessons {
			t.Lessons = append(t.Lessons, l.Slug)
		}
	} else {
		opts.Images = imageCatalog(path, images)
		var l *lessonmeta.Lesson
		l, err = lessonmeta.Load(path, opts)
		if l != nil {
			warnings = l.Warnings
			t.Lessons = append(t.Lessons, l.Slug)
		}
	}
	probs := warnings
	if err != nil {
		probs = lessonmeta.ProblemsOf(err)
		if len(probs) == 0 { // not a metafile problem: unreadable path and the like
			probs = []*lessonmeta.Problem{{File: path, Kind: lessonmeta.ErrMissingFile, Message: describeLoadError(path, err)}}
		}
	}
	for _, p := range probs {
		if p.Severity == lessonmeta.SeverityWarning {
			t.Warnings++
		} else {
			t.Errors++
		}
		t.Problems = append(t.Problems, lessonjson.ProblemOf(p))
	}
	t.OK = t.Errors == 0
	return t
}

func describeLoadError(path string, err error) string {
	if errors.Is(err, os.ErrNotExist) {
		if st, serr := os.Stat(path); serr == nil && st.IsDir() {
			return "neither a lesson (no lesson.meta.yaml) nor a curriculum (no lessons/ folder)"
		}
		return "no such file or directory"
	}
	return err.Error()
}

// imageCatalog is where images of the lesson at path are looked up: each
// --images directory, then the images/ folder of the curriculum holding the
// lesson, if any.
func imageCatalog(path string, images []string) lessonmeta.ImageDirs {
	dirs := lessonmeta.ImageDirs(images)
	dir := path
	if st, err := os.Stat(path); err == nil && !st.IsDir() {
		dir = filepath.Dir(path)
	}
	if root, ok := lessonmeta.FindCurriculumRoot(dir); ok {
		dirs = append(dirs, filepath.Join(root, "images"))
	}
	return dirs
}
