// Command lesson validates, plans and converts NRE Labs / Antidote lessons.
// Run `lesson --help` for its commands; the work is done by the endpointkit
// packages (see cmd/lesson/internal/cli).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/endpointkit/endpointkit/cmd/lesson/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(cli.ExitCode(err))
}
