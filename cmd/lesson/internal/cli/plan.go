package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonjson"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

func planCommand() *Command {
	return &Command{
		Name:    "plan",
		Args:    "[--json] [--images DIR]... [--mtu N] PATH...",
		Summary: "show the endpoint model of lessons: images, ports, interfaces, MACs, addresses, stage configs",
		Help: `
Validates each lesson PATH (a lesson directory or its lesson.meta.yaml) and
prints the runtime model endpointkit derives from it: each endpoint's image
and credentials, ports, management MAC, data interfaces (eth1… in connection
order, with MAC, MTU and the address planned from the connection's subnet),
the links, and the configuration file of every stage.

Images are looked up as for validate; an image without metadata is a warning
and the plan still works. Nothing is started.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			asJSON := fs.Bool("json", false, "print one JSON document (version 1) to stdout")
			mtu := fs.Int("mtu", 0, "MTU of the data-plane links (default 1500)")
			var images stringList
			fs.Var(&images, "images", "a directory of image directories (`DIR`/<slug>/image.meta.yaml); repeatable")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return fmt.Errorf("%w: give at least one lesson PATH", ErrUsage)
				}
				return runPlan(env, args, images, endpoint.Options{MTU: *mtu}, *asJSON)
			}
		},
	}
}

func runPlan(env *Env, paths, images []string, bopts endpoint.Options, asJSON bool) error {
	out := lessonjson.Plans{Version: lessonjson.Version, Plans: []lessonjson.Plan{}}
	failed := false
	for i, path := range paths {
		if lessonmeta.IsCurriculum(path) {
			failed = true
			fmt.Fprintf(env.Stderr, "%s: a curriculum; plan takes lesson directories (%s/lessons/...)\n", path, path)
			continue
		}
		catalog := imageCatalog(path, images)
		l, err := lessonmeta.Load(path, lessonmeta.Options{}) // Build warns about images
		if err != nil {
			failed = true
			reportLoadError(env, path, err)
			continue
		}
		for _, w := range l.Warnings {
			fmt.Fprintln(env.Stderr, w.Error())
		}
		m, err := bopts.Build(l, catalog)
		if err != nil {
			failed = true
			fmt.Fprintf(env.Stderr, "%s: %v\n", path, err)
			continue
		}
		if asJSON {
			out.Plans = append(out.Plans, lessonjson.PlanOf(m))
			continue
		}
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		if err := m.WriteTable(env.Stdout); err != nil {
			return err
		}
	}
	if asJSON {
		if err := writeJSON(env.Stdout, out); err != nil {
			return err
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// reportLoadError prints every problem of a failed load, or the error.
func reportLoadError(env *Env, path string, err error) {
	probs := lessonmeta.ProblemsOf(err)
	if len(probs) == 0 {
		fmt.Fprintf(env.Stderr, "%s: %s\n", path, describeLoadError(path, err))
		return
	}
	for _, p := range probs {
		fmt.Fprintln(env.Stderr, p.Error())
	}
}
