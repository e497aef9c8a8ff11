package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit"
)

func logsCommand() *Command {
	return &Command{
		Name:    "logs",
		Args:    "[--instance NAME] [--follow] [--launcher] [--lines N] ENDPOINT",
		Summary: "print an endpoint's console log (or its launcher's log)",
		Help: `
Prints what an endpoint's VM wrote on its serial console — the kernel, the
boot, the login prompt, console sessions — or, with --launcher, the output
of its launcher (` + "`endpoint run`" + `: accelerator, interfaces, forwards, QEMU's
errors, readiness, exit). With --follow, keeps printing what is written
until Ctrl-C or the endpoint stops.`,
		Operand: OperandEndpoint,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			var o endpointkit.LogOptions
			fs.BoolVar(&o.Follow, "follow", false, "keep printing new output until Ctrl-C or the endpoint stops")
			fs.BoolVar(&o.Follow, "f", false, "short for --follow")
			launcher := fs.Bool("launcher", false, "the launcher's log instead of the console")
			fs.IntVar(&o.Lines, "lines", 0, "only the last `N` lines (0: all that is kept)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one ENDPOINT", ErrUsage)
				}
				if o.Lines < 0 {
					return fmt.Errorf("%w: --lines %d: give 0 (all) or more", ErrUsage, o.Lines)
				}
				if *launcher {
					o.Source = endpointkit.LogLauncher
				}
				inst, err := openEndpoint(env, inf, args[0])
				if err != nil {
					return err
				}
				return inst.WriteLog(ctx, args[0], env.Stdout, o)
			}
		},
	}
}

// openEndpoint opens the selected instance for an endpoint's console or
// logs; an endpoint it does not have is a usage error naming those it has.
// (The runtime seam re-points Instance.Logs and Instance.Console, not this.)
func openEndpoint(env *Env, inf *instanceFlags, name string) (*endpointkit.Instance, error) {
	inst, err := inf.open(env)
	if err != nil {
		return nil, err
	}
	if _, ok := inst.Endpoint(name); !ok {
		var names []string
		for _, e := range inst.Endpoints {
			names = append(names, e.Name)
		}
		return nil, fmt.Errorf("%w: instance %s has no endpoint %q (it has %v)", ErrUsage, inst.Name, name, names)
	}
	return inst, nil
}
