package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"path/filepath"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

func configureCommand() *Command {
	return &Command{
		Name:    "configure",
		Args:    "--stage N [--instance NAME] [DIR]",
		Summary: "apply a stage to a running lesson",
		Help: `
Applies stage N to every endpoint of a running lesson, in parallel, reading
the lesson (DIR, or the directory it was started from) again so edited
configuration files are used. Endpoints that fail are shown; the others keep
the new stage. The instance is --instance NAME, else the one started from
DIR (named after its slug), else the only one running.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			inf.addLogFormat(fs)
			addPythonFlag(fs, inf)
			stage := fs.Int("stage", -1, "the stage to apply (required)")
			return func(ctx context.Context, env *Env, args []string) error {
				if *stage < 0 {
					return fmt.Errorf("%w: give --stage N", ErrUsage)
				}
				if len(args) > 1 {
					return fmt.Errorf("%w: give at most one lesson DIR", ErrUsage)
				}
				if err := inf.checkLogFormat(); err != nil {
					return err
				}
				return runConfigure(ctx, env, inf, args, *stage)
			}
		},
	}
}

func runConfigure(ctx context.Context, env *Env, inf *instanceFlags, args []string, stage int) error {
	var dir string
	if len(args) == 1 {
		var err error
		if dir, err = filepath.Abs(args[0]); err != nil {
			return err
		}
		if inf.name == "" {
			l, err := lessonmeta.Load(dir, lessonmeta.Options{})
			if err != nil {
				reportLoadError(env, args[0], err)
				return errReported
			}
			inf.name = l.Slug
		}
	}
	inst, err := inf.open(env)
	if err != nil {
		return err
	}
	if dir != "" && dir != inst.LessonDir {
		return fmt.Errorf("instance %s runs the lesson in %s, not %s (its VMs share that directory)", inst.Name, inst.LessonDir, dir)
	}
	opts := inf.options(env)
	v := inf.startView(env, &opts, fmt.Sprintf("lesson configure --stage %d %s", stage, inst.Name), "configured", instanceRows(ctx, inst))
	if inst, err = endpointkit.Open(inst.Dir, opts); err == nil { // reporting to the view
		err = inst.Configure(ctx, stage)
	}
	v.stop()
	var cerr *endpointkit.ConfigureError
	if err != nil && !errors.As(err, &cerr) {
		return err
	}
	if werr := writeInstance(env.Stdout, inst); werr != nil {
		return werr
	}
	return err
}
