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
Attaches the terminal to the serial console of an endpoint's VM: its last
lines first, then what the guest prints; what you type goes to the guest.
Every example image offers a login there (the image's user and password,
as ` + "`lesson status`" + ` shows): the way in when SSH is not. Ctrl-] detaches
and leaves the VM running. Several people may attach at once.`,
		Operand: OperandEndpoint,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one ENDPOINT", ErrUsage)
				}
				inst, err := openEndpoint(env, inf, args[0])
				if err != nil {
					return err
				}
				conn, err := inst.Console(ctx, args[0])
				if err != nil {
					return err
				}
				defer conn.Close()
				return termio.Attach(ctx, conn, env.Stdin, env.Stdout, env.Stderr)
			}
		},
	}
}
