// Command imagebuild builds endpoint VM images from recipes (image.yaml)
// and (re)generates their container files. See package
// github.com/endpointkit/endpointkit/imagebuild.
//
//	imagebuild build [--no-cache] [--cache DIR] [--no-oci | --push REF [--ca FILE] [--insecure]] -o OUT_DIR RECIPE_DIR_OR_FILE
//	imagebuild export [--tag NAME] IMAGE_DIR FILE.tar
//	imagebuild push [--ca FILE] [--insecure] IMAGE_DIR REF
//	imagebuild dockerfile OUT_DIR
//	imagebuild test [--accel auto|kvm|tcg] [--timeout 10m] [-v] IMAGE_DIR
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(exitCode(err))
	}
}
