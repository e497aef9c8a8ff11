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
	k, err := kubetest.BuildKubernetes(ctx, ektest.CachePath(), log)
	if err != nil {
		return err
	}
	m, err := kubetest.BuildMultus(ctx, ektest.CachePath(), log)
	if err != nil {
		return err
	}
	if args[0] == "build" {
		fmt.Fprintf(stdout, "%s\n%s\n%s\n%s\n", k.APIServer, k.ControllerManager, k.Kubelet, m.Plugin)
		return nil
	}
	cp, err := kubetest.StartControlPlane(ctx, kubetest.Options{Dir: *dir, APIServer: k.APIServer, ControllerManager: k.ControllerManager, CRDs: []string{m.CRD}, Log: log})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "Kubernetes %s API server at %s (etcd, kube-apiserver, kube-controller-manager; logs in %s)\n", k.Version, cp.Server, cp.Dir)
	fmt.Fprintf(stdout, "export KUBECONFIG=%s\n", cp.Kubeconfig)
	fmt.Fprintln(stdout, "make kube-down stops it")
	return nil
}
