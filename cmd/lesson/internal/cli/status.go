package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/lessonjson"
)

func statusCommand() *Command {
	return &Command{
		Name:    "status",
		Args:    "[--instance NAME] [--json]",
		Summary: "show running lessons: endpoints, state, addresses, how to reach them",
		Help: `
Shows each running lesson instance (or only --instance NAME): every endpoint
with its image, state (starting, ready, configured, config-failed, failed,
down), management address, boot time and how to reach each presentation.
States come from the running system: the endpoint's launcher process and its
health file. Exits 1 when an endpoint is failed, down or not configured.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			asJSON := fs.Bool("json", false, "print one JSON document (version 1) to stdout")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) > 0 {
					return fmt.Errorf("%w: unexpected arguments %q", ErrUsage, args)
				}
				return runStatus(ctx, env, inf, *asJSON)
			}
		},
	}
}

func runStatus(ctx context.Context, env *Env, inf *instanceFlags, asJSON bool) error {
	names := []string{inf.name}
	if inf.name == "" {
		var err error
		if names, err = endpointkit.List(inf.root); err != nil {
			return err
		}
	}
	out := lessonjson.Status{Version: lessonjson.Version, Instances: []*endpointkit.Instance{}}
	unhealthy := false
	for k, name := range names {
		inst, err := endpointkit.Open(endpointkit.InstanceDir(inf.root, name), inf.options(env))
		if err != nil {
			return err
		}
		for _, e := range inst.Status(ctx) {
			unhealthy = unhealthy || (e.State != endpointkit.StateConfigured && !(inst.Stage < 0 && e.State == endpointkit.StateReady))
		}
		out.Instances = append(out.Instances, inst)
		if asJSON {
			continue
		}
		if k > 0 {
			fmt.Fprintln(env.Stdout)
		}
		if err := writeInstance(env.Stdout, inst); err != nil {
			return err
		}
	}
	if asJSON {
		if err := writeJSON(env.Stdout, out); err != nil {
			return err
		}
	} else if len(names) == 0 {
		fmt.Fprintf(env.Stdout, "no lesson instance under %s\n", inf.root)
	}
	if unhealthy {
		return errReported
	}
	return nil
}
