// Command endpoint is the entrypoint of an endpoint container: it runs one
// VM under QEMU inside the container's network namespace (package
// qemulaunch) and attaches to its serial console.
//
//	endpoint run --image DIR [--lesson DIR] [--name NAME] [--forward 22,830]
//	             [--accel auto|kvm|tcg] [--stitch mirred|bridge] [--state DIR]
//	             [--interfaces N] [--macs eth0=MAC,eth1=MAC] [--grace 60s]
//	             [--keep-overlay] [--netns NAME]
//	endpoint console [--name NAME | --state DIR]
//	endpoint health  [--name NAME | --state DIR]
//	endpoint logs    [--name NAME | --state DIR] [--lines N] [--follow]
//	endpoint remove-bridges NAME...
//
// Every run flag can also be given as an ENDPOINT_* environment variable
// (ENDPOINT_IMAGE, ENDPOINT_FORWARD, …); flags win. Exit status of run: 0
// the guest powered off (asked or not), 1 start-up or readiness failed, 2
// usage, 3 the guest ignored poweroff and QEMU was told to quit, 4 QEMU had
// to be killed, 5 QEMU died unexpectedly.
//
// The command only reads flags: the launcher contract (qemulaunch.Launch,
// qemulaunch.ParseLaunch) and the supervisor (qemulaunch.Supervise) are
// the library's.
package main

import (
	"context"
	"fmt"
	"os"

	"github.com/endpointkit/endpointkit/qemulaunch"
)

func main() {
	err := Run(context.Background(), os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "endpoint:", err)
	}
	os.Exit(qemulaunch.ExitCode(err))
}
