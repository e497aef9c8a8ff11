package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

// Shell completion works as cobra's does: the script a shell loads (`lesson
// completion bash|zsh|fish`) is a few lines that call back `lesson
// __complete WORD... CURRENT` for every Tab, and the command answers from
// its own flag sets and the running instances — so verbs, flags, instance
// names and endpoint names are never out of date with the binary.

// completeVerb is the hidden command the completion scripts call.
const completeVerb = "__complete"

// Operand is what a command's first positional argument is, for
// completion.
type Operand int

// Operands.
const (
	OperandFiles    Operand = iota // the shell's own file completion (lesson directories)
	OperandEndpoint                // an endpoint of the selected running instance
	OperandShell                   // a shell that `lesson completion` knows
	OperandLink                    // add ENDPOINT ENDPOINT, or del ENDPOINT:INTERFACE
)

// completionScripts are the scripts of `lesson completion SHELL`.
var completionScripts = map[string]string{
	"bash": `# bash completion for lesson. Load it with:  source <(lesson completion bash)
# or install it: lesson completion bash > /etc/bash_completion.d/lesson
_lesson() {
    local IFS=$'\n' cur=${COMP_WORDS[COMP_CWORD]}
    COMPREPLY=($(compgen -W "$("${COMP_WORDS[0]}" __complete "${COMP_WORDS[@]:1:COMP_CWORD}" 2>/dev/null)" -- "$cur"))
}
complete -o default -F _lesson lesson
`,
	"zsh": `#compdef lesson
# zsh completion for lesson. Load it with:  source <(lesson completion zsh)
# (after compinit), or save it as _lesson in a directory of $fpath.
_lesson() {
  local -a cands
  cands=("${(@f)$("${words[1]}" __complete "${(@)words[2,CURRENT]}" 2>/dev/null)}")
  cands=(${cands:#})
  if (( ${#cands} )); then
    compadd -a cands
  else
    _files
  fi
}
if (( $+functions[compdef] )); then
  compdef _lesson lesson
fi
`,
	"fish": `# fish completion for lesson. Load it with:  lesson completion fish | source
# or install it: lesson completion fish > ~/.config/fish/completions/lesson.fish
function __lesson_complete
    set -l words (commandline -opc)
    set -l cmd $words[1]
    set -e words[1]
    set -l cur (commandline -ct)
    set -l out ($cmd __complete $words "$cur" 2>/dev/null)
    if test (count $out) -gt 0
        printf '%s\n' $out
    else
        __fish_complete_path "$cur"
    end
end
complete -c lesson -f -a '(__lesson_complete)'
`,
}

func completionCommand() *Command {
	return &Command{
		Name:    "completion",
		Args:    "bash|zsh|fish",
		Summary: "print the shell completion script (verbs, flags, instances, endpoints)",
		Help: `
Prints a script that makes the shell complete lesson's commands, their
flags, instance names (--instance) and the endpoints of the running
instance (ssh, console, logs). Load it in the current shell:

  bash:  source <(lesson completion bash)
  zsh:   source <(lesson completion zsh)      (after compinit)
  fish:  lesson completion fish | source

or install it where the shell looks (bash: /etc/bash_completion.d/lesson;
zsh: a file _lesson in $fpath; fish: ~/.config/fish/completions/lesson.fish).`,
		Operand: OperandShell,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			return func(_ context.Context, env *Env, args []string) error {
				if len(args) != 1 {
					return fmt.Errorf("%w: give one shell: bash, zsh or fish", ErrUsage)
				}
				script, ok := completionScripts[args[0]]
				if !ok {
					return fmt.Errorf("%w: no completion for shell %q: bash, zsh or fish", ErrUsage, args[0])
				}
				_, err := io.WriteString(env.Stdout, script)
				return err
			}
		},
	}
}

// complete prints the candidates for the last of words (the word being
// completed, maybe empty), one a line. It never fails: a Tab must not
// print errors.
func complete(env *Env, cmds []*Command, words []string) error {
	if len(words) == 0 {
		words = []string{""}
	}
	cur := words[len(words)-1]
	for _, c := range candidates(cmds, words[:len(words)-1], cur) {
		if strings.HasPrefix(c, cur) {
			fmt.Fprintln(env.Stdout, c)
		}
	}
	return nil
}

// candidates lists what may follow the words before (from the verb on)
// where cur is typed.
func candidates(cmds []*Command, before []string, cur string) []string {
	verbs := func() []string {
		var v []string
		for _, c := range cmds {
			v = append(v, c.Name)
		}
		return append(v, "help")
	}
	if len(before) == 0 {
		return verbs()
	}
	if before[0] == "help" {
		if len(before) == 1 {
			return verbs()
		}
		return nil
	}
	i := slices.IndexFunc(cmds, func(c *Command) bool { return c.Name == before[0] })
	if i < 0 {
		return nil
	}
	c := cmds[i]
	fs := flag.NewFlagSet(c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	c.Setup(fs)
	pos, pending, dashdash := scanWords(fs, before[1:])
	switch {
	case pending != nil:
		return flagValues(fs, pending.Name, pos)
	case strings.HasPrefix(cur, "-") && !dashdash:
		var names []string
		fs.VisitAll(func(f *flag.Flag) {
			if len(f.Name) == 1 {
				names = append(names, "-"+f.Name)
			} else {
				names = append(names, "--"+f.Name)
			}
		})
		return names
	case c.Operand == OperandLink && !dashdash:
		return linkOperands(fs, pos)
	case dashdash || len(pos) > 0:
		return nil
	}
	switch c.Operand {
	case OperandEndpoint:
		return endpointNames(fs)
	case OperandShell:
		return slices.Sorted(maps.Keys(completionScripts))
	}
	return nil
}

// scanWords applies the flags among words to fs and returns the
// positional words, the flag still waiting for its value (the last word
// was --instance, say) and whether "--" was seen.
func scanWords(fs *flag.FlagSet, words []string) (pos []string, pending *flag.Flag, dashdash bool) {
	for _, w := range words {
		switch {
		case pending != nil:
			fs.Set(pending.Name, w)
			pending = nil
		case dashdash || w == "-" || !strings.HasPrefix(w, "-"):
			pos = append(pos, w)
		case w == "--":
			dashdash = true
		default:
			name, val, hasVal := strings.Cut(strings.TrimLeft(w, "-"), "=")
			f := fs.Lookup(name)
			switch {
			case f == nil:
			case hasVal:
				fs.Set(name, val)
			case !isBoolFlag(f):
				pending = f
			}
		}
	}
	return pos, pending, dashdash
}

func isBoolFlag(f *flag.Flag) bool {
	b, ok := f.Value.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// flagValues lists the values a flag takes, where there is a short list:
// instance names, stages, formats. Paths are left to the shell.
func flagValues(fs *flag.FlagSet, name string, pos []string) []string {
	switch name {
	case "instance":
		names, _ := endpointkit.List(flagString(fs, "state-root"))
		return names
	case "log-format":
		return []string{logAuto, logJSON, logText}
	case "accel":
		return []string{"auto", "kvm", "tcg"}
	case "stage":
		dir := ""
		if len(pos) > 0 {
			dir = pos[0]
		} else if inst := selectedInstance(fs); inst != nil {
			dir = inst.LessonDir
		}
		l, err := lessonmeta.Load(dir, lessonmeta.Options{})
		if dir == "" || err != nil {
			return nil
		}
		var stages []string
		for k := range l.Stages {
			stages = append(stages, strconv.Itoa(k))
		}
		return stages
	}
	return nil
}

func flagString(fs *flag.FlagSet, name string) string {
	if f := fs.Lookup(name); f != nil {
		return f.Value.String()
	}
	return ""
}

// selectedInstance is the instance the command would use: --instance,
// else the only one running under --state-root; nil otherwise.
func selectedInstance(fs *flag.FlagSet) *endpointkit.Instance {
	root, name := flagString(fs, "state-root"), flagString(fs, "instance")
	if name == "" {
		names, _ := endpointkit.List(root)
		if len(names) != 1 {
			return nil
		}
		name = names[0]
	}
	inst, err := endpointkit.Open(endpointkit.InstanceDir(root, name), endpointkit.Options{})
	if err != nil {
		return nil
	}
	return inst
}

// endpointNames lists the endpoints of the selected instance.
// linkOperands completes `lesson link`: the verb, then for add two
// endpoints, for del the ENDPOINT:INTERFACE ends of the instance's links.
func linkOperands(fs *flag.FlagSet, pos []string) []string {
	switch {
	case len(pos) == 0:
		return []string{"add", "del"}
	case pos[0] == "add" && len(pos) < 3:
		return endpointNames(fs)
	case pos[0] == "del" && len(pos) == 1:
		inst := selectedInstance(fs)
		if inst == nil {
			return nil
		}
		m, err := inst.Topology()
		if err != nil {
			return nil
		}
		var ends []string
		for _, e := range m.Endpoints {
			for _, it := range e.Interfaces {
				ends = append(ends, e.Name+":"+it.Name)
			}
		}
		return ends
	}
	return nil
}

func endpointNames(fs *flag.FlagSet) []string {
	inst := selectedInstance(fs)
	if inst == nil {
		return nil
	}
	var names []string
	for _, e := range inst.Endpoints {
		names = append(names, e.Name)
	}
	return names
}
