package cli

import (
	"flag"
	"log/slog"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/kuberun"
)

// kubeFlags choose the Kubernetes runtime (up, render).
type kubeFlags struct {
	kubeconfig, context, registry, node *string
	insecure                            *bool
}

func addKubeFlags(fs *flag.FlagSet) *kubeFlags {
	return &kubeFlags{
		kubeconfig: fs.String("kubeconfig", "", "run the lesson on the Kubernetes cluster of this kubeconfig (`FILE`) instead of this machine"),
		context:    fs.String("context", "", "the kubeconfig context (`NAME`; default its current one; implies Kubernetes)"),
		registry:   fs.String("registry", "", "a registry repository the cluster pulls from (`REGISTRY/PATH`): images it lacks are pushed there"),
		node:       fs.String("node", "", "put every pod on this Kubernetes node (`NAME`; default: the scheduler's choice, all together)"),
		insecure:   fs.Bool("insecure-registry", false, "allow plain HTTP to a --registry that is not on loopback"),
	}
}

// set reports whether the command line asks for Kubernetes.
func (k *kubeFlags) set() bool { return *k.kubeconfig != "" || *k.context != "" }

// options are the runtime's options; build is how missing OCI images are
// built.
func (k *kubeFlags) options(build imagebuild.Options, log *slog.Logger) kuberun.Options {
	return kuberun.Options{Kubeconfig: *k.kubeconfig, Context: *k.context, Registry: *k.registry, Node: *k.node,
		Push: imagebuild.PushOptions{Insecure: *k.insecure}, Build: build, Logger: log}
}

// runtimeFor rebuilds the runtime an instance record names (status,
// configure, ssh, console, logs, down of an instance on a cluster).
func runtimeFor(log *slog.Logger) func(endpointkit.RuntimeRecord) (endpointkit.Runtime, error) {
	return func(rec endpointkit.RuntimeRecord) (endpointkit.Runtime, error) {
		return kuberun.ForRecord(rec, kuberun.Options{Logger: log})
	}
}
