// Command lesson works with NRE Labs / Antidote lessons; `lesson --help`
// lists its commands. The work is done by the endpointkit packages, through
// cmd/lesson/internal/cli.
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
