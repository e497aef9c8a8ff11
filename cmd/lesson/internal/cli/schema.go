package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit/lessonmeta"
)

func schemaCommand() *Command {
	return &Command{
		Name:    "schema",
		Args:    "",
		Summary: "print the JSON Schema of lesson.meta.yaml (for editors)",
		Help: `
Prints a JSON Schema (draft 2020-12) for lesson.meta.yaml, generated from the
Go types, for editors such as VS Code with the YAML extension:

  lesson schema > lesson.meta.schema.json
  # then, first line of a lesson.meta.yaml:
  # yaml-language-server: $schema=./lesson.meta.schema.json

The schema cannot express every rule (unique names, connection ends, files
per stage); lesson validate checks them all.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("%w: schema takes no arguments", ErrUsage)
				}
				s, err := lessonmeta.Schema()
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(env.Stdout, "%s\n", s)
				return err
			}
		},
	}
}
