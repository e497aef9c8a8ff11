package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit/internal/termio"
)

func consoleCommand() *Command {
	return &Command{
		Name:    "console",
		Args:    "[--instance NAME] ENDPOINT",
		Summary: "attach to an endpoint's serial console (Ctrl-] detaches)",
		Help: `
Attaches the terminal to the serial console of an endpoint's VM: what the
guest prints appears here, what you type goes to the guest. Ctrl-] detaches
and leaves the VM running. Several people may attach at once.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one ENDPOINT", ErrUsage)
				}
				inst, err := inf.open(env)
				if err != nil {
					return err
				}
				ep, ok := inst.Endpoint(args[0])
				if !ok {
					return fmt.Errorf("%w: instance %s has no endpoint %q", ErrUsage, inst.Name, args[0])
				}
				conn, err := inst.Console(ctx, ep.Name)
				if err != nil {
					return fmt.Errorf("console of %s: %w (is it running? see `lesson status`)", ep.Name, err)
				}
				defer conn.Close()
				return termio.Attach(ctx, conn, env.Stdin, env.Stdout, env.Stderr)
			}
		},
	}
}
