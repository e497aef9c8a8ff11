package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
)

// DefaultDir holds the control plane that `up` starts.
const DefaultDir = "/var/tmp/endpointkit-kube"

// Run runs the command line args (without the program name).
func Run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "up" && args[0] != "down" && args[0] != "build") {
		fmt.Fprintln(stderr, "usage: kubecluster up|down|build [-dir DIR]")
		return errors.New("no command")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", DefaultDir, "directory holding the control plane's files and PIDs")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if args[0] == "down" {
		if err := kubetest.Stop(*dir); err != nil {
			return err
		}
		fmt.Fprintln(stdout, "control plane in", *dir, "stopped")
		return nil
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	k, m, err := kubetest.Build(ctx, ektest.CachePath(), log)
	if err != nil {
		return err
	}
	if args[0] == "build" {
		fmt.Fprintf(stdout, "%s\n%s\n%s\n%s\n%s\n", k.APIServer, k.ControllerManager, k.Scheduler, k.Kubelet, m.Plugin)
		return nil
	}
	cp, err := kubetest.StartControlPlane(ctx, kubetest.Options{Dir: *dir, APIServer: k.APIServer, ControllerManager: k.ControllerManager,
		Scheduler: k.Scheduler, CRDs: []string{m.CRD}, Log: log, Node: &kubetest.NodeOptions{Kubelet: k.Kubelet, Multus: m.Plugin}})
	if err != nil {
		return err
	}
	n := cp.Node
	fmt.Fprintf(stdout, "Kubernetes %s API server at %s (etcd, kube-apiserver, kube-controller-manager, kube-scheduler; logs in %s)\n", k.Version, cp.Server, cp.Dir)
	fmt.Fprintf(stdout, "node %s: kubelet, containerd (%s), Multus %s, registry %s\n", n.Name, n.Containerd, m.Version, n.Registry)
	fmt.Fprintf(stdout, "try: lesson up examples/lessons/linux-triangle --kubeconfig %s --registry %s/endpointkit\n", cp.Kubeconfig, n.Registry)
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", cp.Kubeconfig)
	fmt.Fprintln(stdout, "make kube-down stops it")
	return nil
}
