// Command endpoint is the entrypoint of an endpoint container: it runs one
// VM under QEMU inside the container's network namespace (package
// qemulaunch) and attaches to its serial console.
//
//	endpoint run --image DIR [--lesson DIR] [--name NAME] [--forward 22,830]
//	             [--accel auto|kvm|tcg] [--stitch mirred|bridge] [--state DIR]
//	             [--interfaces N] [--macs eth0=MAC,eth1=MAC] [--grace 60s]
//	             [--keep-overlay] [--keep-state] [--netns NAME]
//	             [--restart on-failure|always|never] [--max-restarts N]
//	             [--identity FILE]
//	endpoint console [--name NAME | --state DIR]
//	endpoint health  [--name NAME | --state DIR]
//	endpoint hostkeys [--name NAME | --state DIR]
//	endpoint logs    [--name NAME | --state DIR] [--lines N] [--follow]
//	endpoint remove-bridges NAME...
//	endpoint nic add --interface ethN --mac MAC [--mtu N] [--name NAME | --state DIR]
//	endpoint nic del --interface ethN [--name NAME | --state DIR]
//	endpoint heal    --dir INSTANCE-STATE-DIR
//
// run restarts a VM that ended unasked as --restart says (see
// qemulaunch.Supervise); SIGUSR1 restarts it on demand, SIGUSR2 on a
// fresh overlay; SIGTERM or SIGINT stop it. After a clean stop the state
// directory is removed unless --keep-state.
//
// heal is a lesson instance's healer (endpointkit.Heal), which `lesson up`
// starts beside the launchers: it restarts endpoints whose launcher or
// namespace is gone, repairs links and configures the current stage on
// endpoints that booted again.
//
// Every run flag can also be given as an ENDPOINT_* environment variable
// (ENDPOINT_IMAGE, ENDPOINT_FORWARD, …); flags win. Exit status of run: 0
// the guest powered off (asked or not), 1 start-up or readiness failed, 2
// usage, 3 the guest ignored poweroff and QEMU was told to quit, 4 QEMU had
// to be killed, 5 QEMU died unexpectedly. `endpoint nic` asks the running
// launcher to hot-plug or unplug a data NIC (its control socket).
//
// --identity is an instance identity made elsewhere (a Kubernetes
// Secret mounted into the container), for an image that takes one; by
// default the launcher makes it in its state directory. hostkeys prints
// the SSH host keys the launcher learned from the guest's console (JSON,
// [] before any were learned): how a cluster runtime pins a vendor disk's
// keys through the API server's exec.
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
