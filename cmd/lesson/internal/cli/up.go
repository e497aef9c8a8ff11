package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/kuberun"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

func upCommand() *Command {
	return &Command{
		Name:    "up",
		Args:    "[--stage N] [--instance NAME] [--images DIR]... [--recipes DIR]... [--replace] [--check] [--kubeconfig FILE [--context NAME] [--registry REPO]] DIR",
		Summary: "launch a lesson: images, namespaces, VMs, links, stage configuration",
		Help: `
Launches the lesson in DIR on this machine and leaves it running: validates
it, finds or builds every endpoint's image, creates a network namespace per
endpoint and the links between them, boots every endpoint's VM in parallel
(each under its own ` + "`endpoint run`" + ` launcher), waits until each answers and
configures the stage on it. Then prints every endpoint with how to reach it.

Images come from --images DIRs (built image directories, DIR/<slug>), else
are built from recipes (--recipes DIRs, plus the images/ folder beside the
lesson's lessons/ folder, e.g. examples/images) into the image cache.

With --kubeconfig (or --context) the lesson runs on that Kubernetes cluster
instead: a namespace ek-INSTANCE with a pod per endpoint, a Multus network
per link; images come from --registry REPO (those it lacks are pushed
there), endpoints are reached and configured through the API server (port
forwards), and later commands find the cluster in the instance's record.

Ctrl-C removes everything started; so does a failed boot, unless
--keep-on-failure. If an endpoint's configuration fails, the lesson stays
up and the failure is shown (exit status 1); fix it and run
` + "`lesson configure`" + `, or ` + "`lesson down`" + `. Needs root on this machine.

An endpoint whose VM ends unasked (killed, crashed, powered off) is started
again and the stage configured on it (--restart on-failure, the default;
always also retries VMs that failed to boot; never leaves it down): its
launcher restarts the VM in place, and the instance's healer (a process of
its own, ` + "`endpoint heal`" + `) restarts endpoints whose launcher or namespace
is gone and repairs deleted links, with no lesson command running.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			inf.addLogFormat(fs)
			addPythonFlag(fs, inf)
			stage := fs.Int("stage", 0, "stage to configure (-1: none)")
			var images, recipes stringList
			fs.Var(&images, "images", "a directory of built images (`DIR`/<slug>/manifest.json); repeatable")
			fs.Var(&recipes, "recipes", "a directory of image recipes (`DIR`/<slug>/image.yaml); repeatable")
			replace := fs.Bool("replace", false, "remove an instance of the same name first")
			check := fs.Bool("check", false, "then ping across every link from both ends, over SSH")
			accel := fs.String("accel", "", "accelerator: auto, kvm or tcg (default auto; $ENDPOINTKIT_ACCEL overrides)")
			launcher := fs.String("launcher", "", "the endpoint launcher binary (default: `endpoint` beside lesson, else on PATH)")
			timeout := fs.Duration("ready-timeout", endpointkit.DefaultReadyTimeout, "how long each endpoint may take to boot")
			keep := fs.Bool("keep-on-failure", false, "leave what was placed when an endpoint does not boot, for inspection (then lesson down)")
			kf := addKubeFlags(fs)
			restart := fs.String("restart", "on-failure", "when an endpoint whose VM ended unasked is started again and configured: on-failure, always or never")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one lesson DIR", ErrUsage)
				}
				if err := inf.checkLogFormat(); err != nil {
					return err
				}
				opts := inf.options(env)
				opts.Stage, opts.Replace, opts.Launcher, opts.ReadyTimeout, opts.KeepOnFailure = *stage, *replace, *launcher, *timeout, *keep
				opts.Accel = qemulaunch.Accel(*accel)
				policy, err := qemulaunch.ParseRestartPolicy(*restart)
				if err != nil {
					return fmt.Errorf("%w: --restart: %v", ErrUsage, err)
				}
				opts.Restart = policy
				opts.Images.Dirs, opts.Images.Recipes = images, recipes
				opts.Images.Build.Logger = opts.Logger
				if isTerminal(env.Stderr) {
					opts.Images.Build.Progress = env.Stderr
				}
				if kf.set() {
					rt, err := kuberun.New(kf.options(opts.Images.Build, opts.Logger))
					if err != nil {
						return err
					}
					opts.Runtime = rt
				}
				return runUp(ctx, env, inf, args[0], opts, *check)
			}
		},
	}
}

func runUp(ctx context.Context, env *Env, inf *instanceFlags, dir string, opts endpointkit.Options, check bool) error {
	if os.Geteuid() != 0 && opts.Runtime == nil {
		return errors.New("needs root (network namespaces, TAPs): run it with sudo")
	}
	title, rows := upRows(dir)
	v := inf.startView(env, &opts, title, upGoal(opts.Stage), rows)
	if v != nil {
		opts.Images.Build.Progress, opts.Images.Build.Logger = nil, v.buildLogger()
	}
	t0 := time.Now()
	inst, err := endpointkit.Up(ctx, dir, opts)
	v.stop()
	var cerr *endpointkit.ConfigureError
	if err != nil && !errors.As(err, &cerr) {
		return err
	}
	fmt.Fprintf(env.Stdout, "up in %.1fs: ", time.Since(t0).Seconds())
	if werr := writeInstance(env.Stdout, inst); werr != nil {
		return werr
	}
	if err != nil {
		return err
	}
	if check {
		return writeChecks(ctx, env, inst)
	}
	return nil
}

// writeChecks pings across every link and prints the outcome.
func writeChecks(ctx context.Context, env *Env, inst *endpointkit.Instance) error {
	checks, err := inst.CheckLinks(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "\nlinks (ping from each end over SSH):\n")
	failed := 0
	for _, c := range checks {
		res := "ok"
		if !c.OK {
			failed++
			res = "FAILED: " + text.FirstLine(c.Err.Error())
		}
		fmt.Fprintf(env.Stdout, "  %s %s → %s %s  %s\n", c.From, c.Interface, c.To, c.Address, res)
	}
	if len(checks) == 0 {
		fmt.Fprintln(env.Stdout, "  (no link has planned addresses)")
	}
	if failed > 0 {
		return fmt.Errorf("%d of %d link checks failed", failed, len(checks))
	}
	return nil
}
