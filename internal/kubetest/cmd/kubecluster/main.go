// Command kubecluster starts and stops the test harness's single-node
// Kubernetes (control plane, scheduler and a node with a registry) for
// people: `make kube-up` and `make kube-down`.
//
//	kubecluster up   [-dir DIR]   build (cached) and start; print the kubeconfig
//	kubecluster down [-dir DIR]   stop what up started, by PID
//	kubecluster build             build the binaries into the test cache (make test does, first)
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
	err := Run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "kubecluster:", err)
		os.Exit(1)
	}
}
