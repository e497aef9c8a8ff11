package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

// instanceOfLesson names the instance started from the lesson in dir: the
// one whose record names that directory, else the lesson's slug (the
// default instance name of `lesson up DIR`).
func instanceOfLesson(root, dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	names, err := endpointkit.List(root)
	if err != nil {
		return "", err
	}
	var from []string
	for _, n := range names {
		if inst, err := endpointkit.Open(endpointkit.InstanceDir(root, n), endpointkit.Options{}); err == nil && inst.LessonDir == abs {
			from = append(from, n)
		}
	}
	switch len(from) {
	case 1:
		return from[0], nil
	case 0:
	default:
		return "", fmt.Errorf("%w: %d instances run the lesson in %s (%s): pick one with --instance NAME", ErrUsage, len(from), dir, strings.Join(from, ", "))
	}
	l, err := lessonmeta.Load(abs, lessonmeta.Options{})
	if err != nil {
		return "", fmt.Errorf("no instance runs the lesson in %s, and it cannot be read for its slug: %w", dir, err)
	}
	return l.Slug, nil
}

func downCommand() *Command {
	return &Command{
		Name:    "down",
		Args:    "[--instance NAME | --all] [DIR]",
		Summary: "remove a running lesson: VMs, namespaces, links, state",
		Help: `
Removes a lesson instance (--instance NAME; else the one started from the
lesson DIR, as ` + "`lesson up DIR`" + ` names it; else the only one running; or
every one with --all): stops its endpoints (the guests get a few seconds to
power off, then QEMU is stopped), deletes its namespaces and links, and its
state directory. It works from the state directory alone, also after a crash.
An instance that does not exist is not an error.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			inf.addLogFormat(fs)
			all := fs.Bool("all", false, "remove every instance under --state-root")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) > 1 {
					return fmt.Errorf("%w: unexpected arguments %q (give --instance NAME or one lesson DIR)", ErrUsage, args)
				}
				if len(args) == 1 && inf.name == "" && !*all {
					name, err := instanceOfLesson(inf.root, args[0])
					if err != nil {
						return err
					}
					inf.name = name
				}
				if err := inf.checkLogFormat(); err != nil {
					return err
				}
				if os.Geteuid() != 0 {
					return errors.New("needs root (network namespaces): run it with sudo")
				}
				dirs := []string{}
				switch {
				case *all:
					names, err := endpointkit.List(inf.root)
					if err != nil {
						return err
					}
					for _, n := range names {
						dirs = append(dirs, endpointkit.InstanceDir(inf.root, n))
					}
				case inf.name != "":
					dirs = append(dirs, endpointkit.InstanceDir(inf.root, inf.name))
				default:
					dir, err := inf.dir()
					if err != nil {
						return err
					}
					dirs = append(dirs, dir)
				}
				var errs []error
				for _, d := range dirs {
					_, statErr := os.Stat(d)
					opts := inf.options(env)
					v := inf.startView(env, &opts, "lesson down "+filepath.Base(d), "stopped", downRows(ctx, d, opts))
					err := endpointkit.Teardown(ctx, d, opts)
					v.stop()
					if err != nil {
						errs = append(errs, err)
						continue
					}
					if statErr == nil {
						fmt.Fprintf(env.Stdout, "removed %s\n", d)
					} else {
						fmt.Fprintf(env.Stdout, "no instance at %s; nothing of it left\n", d)
					}
				}
				return errors.Join(errs...)
			}
		},
	}
}
