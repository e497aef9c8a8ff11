package cli

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/mattn/go-isatty"
)

// instanceFlags are the flags that pick a running instance.
type instanceFlags struct {
	root, name string
	verbose    bool
	logFormat  string // --log-format, on commands that report progress (view.go)
	python     string // --python, on the commands that configure
}

func addInstanceFlags(fs *flag.FlagSet) *instanceFlags {
	f := &instanceFlags{}
	fs.StringVar(&f.root, "state-root", endpointkit.DefaultStateRoot, "parent of the instance state directories (`DIR`)")
	fs.StringVar(&f.name, "instance", "", "the lesson instance (`NAME`); default: the lesson's slug, or the only running instance")
	fs.BoolVar(&f.verbose, "verbose", false, "log details (structured) to stderr")
	return f
}

// dir resolves the instance: --instance, else the only one running.
func (f *instanceFlags) dir() (string, error) {
	if f.name != "" {
		return endpointkit.InstanceDir(f.root, f.name), nil
	}
	names, err := endpointkit.List(f.root)
	if err != nil {
		return "", err
	}
	switch len(names) {
	case 0:
		return "", fmt.Errorf("no lesson instance under %s: start one with `lesson up DIR`", f.root)
	case 1:
		return endpointkit.InstanceDir(f.root, names[0]), nil
	}
	return "", fmt.Errorf("%w: %d instances are running (%s): pick one with --instance NAME", ErrUsage, len(names), strings.Join(names, ", "))
}

// open reattaches to the selected instance.
func (f *instanceFlags) open(env *Env) (*endpointkit.Instance, error) {
	dir, err := f.dir()
	if err != nil {
		return nil, err
	}
	return endpointkit.Open(dir, f.options(env))
}

// options are the library options for progress and logging: structured
// records on stderr (with --verbose also the library's details); a command
// that reports progress may draw a live view instead (startView).
func (f *instanceFlags) options(env *Env) endpointkit.Options {
	opts := endpointkit.Options{StateRoot: f.root, Instance: f.name}
	if f.verbose {
		opts.Logger = slog.New(slog.NewTextHandler(env.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	opts.Progress = f.structuredProgress(env.Stderr)
	opts.RuntimeFor = runtimeFor(opts.Logger)
	if f.python != "" {
		opts.Configurators = map[endpoint.Method]configure.Configurator{endpoint.MethodPython: &configure.Python{Interpreter: f.python}}
	}
	return opts
}

// addPythonFlag adds --python to a command that configures endpoints.
func addPythonFlag(fs *flag.FlagSet, f *instanceFlags) {
	fs.StringVar(&f.python, "python", "", "the Python interpreter of python-configured endpoints (`PATH` or name; default $"+
		configure.PythonEnv+", else the first python3 on PATH)")
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd()))
}

// restartPolicy names the instance's restart policy.
func restartPolicy(inst *endpointkit.Instance) string {
	if inst.Restart == "" {
		return "on-failure"
	}
	return string(inst.Restart)
}

// writeInstance prints an instance: one row per endpoint with its state and
// how to reach each presentation.
func writeInstance(w io.Writer, inst *endpointkit.Instance) error {
	stage := "no stage configured"
	if inst.Stage >= 0 {
		stage = fmt.Sprintf("stage %d", inst.Stage)
	}
	fmt.Fprintf(w, "lesson %s, instance %s (%s, %s, restart %s)\n\n", inst.Lesson, inst.Name, stage, inst.Accel, restartPolicy(inst))
	if inst.Abandoned() {
		fmt.Fprintf(w, "  ✗ `lesson up` (pid %d) ended before this instance was up: it is only good for removing: lesson down --instance %s\n\n", inst.UpPID, inst.Name)
	} else if inst.HealerPID > 0 && !inst.HealerRunning() {
		fmt.Fprintf(w, "  ✗ the instance's healer (pid %d) is not running: an endpoint whose launcher dies stays down until `lesson restart ENDPOINT`\n\n", inst.HealerPID)
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ENDPOINT\tIMAGE\tSTATE\tADDRESS\tBOOT\tRESTARTS\tREACH")
	var problems []string
	for _, e := range inst.Endpoints {
		state := string(e.State)
		if e.State == endpointkit.StateConfigured {
			state = fmt.Sprintf("configured (stage %d)", e.Stage)
		}
		boot := "-"
		if e.Boot > 0 {
			boot = fmt.Sprintf("%.1fs", e.Boot.Seconds())
		}
		reach := []string{}
		for _, p := range e.Presentations {
			reach = append(reach, fmt.Sprintf("%s (%s): %s", p.Name, p.Type, p.Access))
		}
		if len(reach) == 0 {
			reach = append(reach, "-")
		}
		addr := e.Address.String()
		if !e.Address.IsValid() {
			addr = "-"
			if e.Pod != "" {
				addr = "pod " + e.Pod
			}
		}
		restarts := fmt.Sprint(e.Restarts)
		if e.Restarts > 0 && e.LastExit != "" {
			restarts += " (last: " + e.LastExit + ")"
		}
		for k, r := range reach {
			if k == 0 {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Name, e.Image, state, addr, boot, restarts, r)
			} else {
				fmt.Fprintf(tw, "\t\t\t\t\t\t%s\n", r)
			}
		}
		if e.Error != "" && !inst.Abandoned() {
			problems = append(problems, fmt.Sprintf("%s: %s", e.Name, e.Error))
		}
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, p := range problems {
		fmt.Fprintln(w, "  ✗", p)
	}
	writeLinkChanges(w, inst.Links)
	logins := map[string]bool{}
	var loginList []string
	for _, e := range inst.Endpoints {
		im, err := lessonmeta.LoadImage(filepath.Join(e.ImageDir, lessonmeta.ImageFile), lessonmeta.Options{})
		if err != nil || im.SSHUser == "" {
			continue
		}
		// The lab's own training account, as Antidote showed it to learners.
		l := fmt.Sprintf("%s / %s (image %s)", im.SSHUser, im.SSHPassword, e.Image)
		if !logins[l] {
			logins[l] = true
			loginList = append(loginList, l)
		}
	}
	if len(loginList) > 0 {
		fmt.Fprintf(w, "\nlogin: %s\n", strings.Join(loginList, "; "))
	}
	sel := ""
	if names, _ := endpointkit.List(filepath.Dir(inst.Dir)); len(names) > 1 {
		sel = " --instance " + inst.Name
	}
	fmt.Fprintf(w, "console: lesson console%s ENDPOINT   shell (no password): lesson ssh%s ENDPOINT   remove: lesson down%s\n", sel, sel, sel)
	return nil
}

// writeLinkChanges lists the links added to the running instance and the
// lesson links removed from it.
func writeLinkChanges(w io.Writer, c endpointkit.LinkChanges) {
	if len(c.Added)+len(c.Removed) == 0 {
		return
	}
	fmt.Fprintln(w)
	for _, l := range c.Added {
		fmt.Fprintf(w, "link added:   %s; guest %s on %s, %s on %s\n", l, l.A.GuestName, l.A.Endpoint, l.B.GuestName, l.B.Endpoint)
	}
	for _, e := range c.Removed {
		fmt.Fprintf(w, "link removed: the lesson's link at %s\n", e)
	}
}
