package cli

import (
	"context"
	"flag"
	"fmt"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/kuberun"
)

func renderCommand() *Command {
	return &Command{
		Name:    "render",
		Args:    "--kubernetes [--registry REPO] [--instance NAME] [--stage N] [--images DIR]... [--recipes DIR]... DIR",
		Summary: "print a lesson as Kubernetes objects (YAML) for kubectl apply or GitOps",
		Help: `
Prints the Kubernetes objects ` + "`lesson up --kubeconfig`" + ` would apply for the lesson
in DIR, as one YAML stream: the instance's namespace, service account,
a NetworkAttachmentDefinition per link, a pod per endpoint, a Service per
presentation, the NetworkPolicy. Apply it with
` + "`kubectl apply --server-side -f -`" + `.

An endpoint whose image takes a per-instance identity (SSH host keys made
for each instance) mounts a Secret <endpoint>-identity that is not printed:
it holds private keys, which ` + "`lesson up`" + ` makes for a placed instance only.
Create it yourself (key identity.json, see docs/kubernetes.md) before applying.

Images are referenced by digest: under --registry REPO (REPO/<slug>@sha256:…,
with the lesson content as REPO/lesson-<slug>), else as their OCI images
were built (imagebuild build --push REF). Nothing is pushed and no cluster
is asked: push the images first (lesson up --registry does).`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			kubernetes := fs.Bool("kubernetes", false, "render Kubernetes objects (the only format)")
			instance := fs.String("instance", "", "the instance (`NAME`; default the lesson's slug): names the namespace ek-NAME")
			stage := fs.Int("stage", 0, "the stage the namespace is labelled with")
			var images, recipes stringList
			fs.Var(&images, "images", "a directory of built images (`DIR`/<slug>/manifest.json); repeatable")
			fs.Var(&recipes, "recipes", "a directory of image recipes (`DIR`/<slug>/image.yaml); repeatable")
			kf := addKubeFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one lesson DIR", ErrUsage)
				}
				if !*kubernetes {
					return fmt.Errorf("%w: say what to render: --kubernetes", ErrUsage)
				}
				opts := endpointkit.Options{Instance: *instance, Stage: *stage}
				opts.Images.Dirs, opts.Images.Recipes = images, recipes
				p, err := endpointkit.Plan(ctx, args[0], opts)
				if err != nil {
					return err
				}
				objs, err := kuberun.Render(ctx, p, kf.options(opts.Images.Build, nil))
				if err != nil {
					return err
				}
				return objs.WriteYAML(env.Stdout)
			}
		},
	}
}
