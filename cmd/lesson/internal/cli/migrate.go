package cli

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"

	"github.com/endpointkit/endpointkit/lessonmeta"
)

func migrateCommand() *Command {
	return &Command{
		Name:    "migrate",
		Args:    "PATH",
		Summary: "convert an older Syringe/Antidote lesson to the current format",
		Help: `
Reads PATH (a lesson directory holding lesson.meta.yaml or syringe.yaml, or
the file itself) in any known format, detected automatically: Syringe v0.1 and
v0.3 syringe.yaml, Syringe v0.4/v0.5 lesson.meta.yaml, or the current format.
Prints the current-format lesson.meta.yaml to stdout and, to stderr, a report
of what was mapped, dropped or filled in, and the guide and config files to
rename (stage directories are renumbered from 0).`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give exactly one PATH", ErrUsage)
				}
				return runMigrate(env, args[0])
			}
		},
	}
}

func runMigrate(env *Env, path string) error {
	file := path
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		file = filepath.Join(path, lessonmeta.LessonFile)
		if _, err := os.Stat(file); err != nil {
			file = filepath.Join(path, "syringe.yaml")
		}
	}
	data, err := lessonmeta.ReadFile(file)
	if err != nil {
		reportLoadError(env, file, err)
		return errReported
	}
	m, err := lessonmeta.Migrate(file, data)
	if err != nil {
		reportLoadError(env, file, err)
		return errReported
	}
	out, err := m.YAML()
	if err != nil {
		return err
	}
	if _, err := env.Stdout.Write(out); err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "%s: %s format\n", file, m.From)
	for _, n := range m.Notes {
		fmt.Fprintln(env.Stderr, n.String())
	}
	for _, w := range m.Warnings {
		fmt.Fprintln(env.Stderr, w.Error())
	}
	if len(m.Renames) > 0 {
		fmt.Fprintln(env.Stderr, "files to rename (relative to the lesson directory; other files under a stage directory move with it):")
		for _, r := range m.Renames {
			fmt.Fprintf(env.Stderr, "  %s -> %s\n", r.From, r.To)
		}
	}
	return nil
}
