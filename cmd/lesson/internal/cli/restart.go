package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit"
)

func restartCommand() *Command {
	return &Command{
		Name:    "restart",
		Args:    "[--instance NAME] [--reset] ENDPOINT",
		Summary: "restart an endpoint's VM and configure the current stage on it",
		Help: `
Starts an endpoint's VM again: in place by its launcher (its links and its
peers stay as they are), or, when its launcher or namespace is gone, placed
anew with its links repaired. With --reset the guest starts on a fresh disk
(the image's), without what it wrote. Returns once the VM is ready and the
instance's current stage is configured on it.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			reset := fs.Bool("reset", false, "start on a fresh overlay (the image's disk)")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one ENDPOINT", ErrUsage)
				}
				inst, err := inf.open(env)
				if err != nil {
					return err
				}
				if _, ok := inst.Endpoint(args[0]); !ok {
					return fmt.Errorf("%w: instance %s has no endpoint %q", ErrUsage, inst.Name, args[0])
				}
				err = inst.RestartEndpoint(ctx, args[0], *reset)
				var cerr *endpointkit.ConfigureError
				if err != nil && !errors.Is(err, endpointkit.ErrConfigure) && !errors.As(err, &cerr) {
					return err
				}
				inst.Status(ctx)
				if werr := writeInstance(env.Stdout, inst); werr != nil {
					return werr
				}
				return err
			}
		},
	}
}
