// Package cli is the lesson command: flag parsing and output around the
// endpointkit library, testable without a process (see [Run]).
//
// Each subcommand is one file defining a func returning its [*Command];
// [commands] lists them. Adding a subcommand means adding its file and one
// line there, nothing else.
//
// Exit status (see [ExitCode]): 0 success, 1 a failure (invalid lesson,
// unreadable file, …), 2 a usage error. JSON output (--json) is versioned:
// every document has "version": 1, and fields are only ever added within a
// version; docs/lesson-json.md describes each document.
package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ErrUsage marks errors in the command line (exit status 2).
var ErrUsage = errors.New("usage error")

// errReported is returned after a command has printed why it failed; Run
// prints nothing more (exit status 1).
var errReported = errors.New("failed")

// Env is what a command may touch of its process.
type Env struct {
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
}

// Command is one subcommand of lesson.
type Command struct {
	Name    string // as typed: "validate"
	Args    string // synopsis after the name: "[--strict] PATH..."
	Summary string // one line for the command list
	Help    string // paragraphs shown by --help, before the flags
	// Setup declares the command's flags on fs and returns the function
	// that runs it with the positional arguments once flags are parsed.
	Setup func(fs *flag.FlagSet) func(ctx context.Context, env *Env, args []string) error
	// Operand is what the first positional argument is, for shell
	// completion (completion.go); the zero value offers the shell's files.
	Operand Operand
}

// commands lists every subcommand, in help order.
func commands() []*Command {
	return []*Command{
		validateCommand(),
		planCommand(),
		renderCommand(),
		migrateCommand(),
		schemaCommand(),
		upCommand(),
		statusCommand(),
		configureCommand(),
		consoleCommand(),
		sshCommand(),
		linkCommand(),
		logsCommand(),
		restartCommand(),
		downCommand(),
		completionCommand(),
	}
}

// Run runs the lesson command with args (without the program name). It
// prints results to stdout and diagnostics to stderr, and returns nil on
// success; map the error to an exit status with [ExitCode].
func Run(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	env := &Env{Stdin: stdin, Stdout: stdout, Stderr: stderr}
	cmds := commands()
	if len(args) == 0 {
		writeOverview(stderr, cmds)
		return fmt.Errorf("%w: no command given", ErrUsage)
	}
	name := args[0]
	switch name {
	case completeVerb:
		return complete(env, cmds, args[1:])
	case "-h", "-help", "--help":
		writeOverview(stdout, cmds)
		return nil
	case "help":
		if len(args) == 1 {
			writeOverview(stdout, cmds)
			return nil
		}
		name, args = args[1], []string{args[1], "--help"}
	}
	i := slices.IndexFunc(cmds, func(c *Command) bool { return c.Name == name })
	if i < 0 {
		fmt.Fprintf(stderr, "lesson: unknown command %q\n\n", name)
		writeOverview(stderr, cmds)
		return fmt.Errorf("%w: unknown command %q", ErrUsage, name)
	}
	return runCommand(ctx, env, cmds[i], args[1:])
}

func runCommand(ctx context.Context, env *Env, c *Command, args []string) error {
	fs := flag.NewFlagSet("lesson "+c.Name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	run := c.Setup(fs)
	pos, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		writeCommandHelp(env.Stdout, c, fs)
		return nil
	}
	if err != nil {
		fmt.Fprintf(env.Stderr, "lesson %s: %v\n\n", c.Name, err)
		writeCommandHelp(env.Stderr, c, fs)
		return fmt.Errorf("%w: %v", ErrUsage, err)
	}
	err = run(ctx, env, pos)
	switch {
	case err == nil, errors.Is(err, errReported):
	case errors.Is(err, ErrUsage):
		fmt.Fprintf(env.Stderr, "lesson %s: %v\n\n", c.Name, err)
		writeCommandHelp(env.Stderr, c, fs)
	default:
		fmt.Fprintf(env.Stderr, "lesson %s: %v\n", c.Name, err)
	}
	return err
}

// parseInterspersed parses flags wherever they appear among the
// positional arguments (`validate DIR --strict` works); after "--"
// everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		consumed := len(args) - len(rest)
		if consumed > 0 && args[consumed-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// ExitCode maps an error returned by Run to a process exit status.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, ErrUsage):
		return 2
	}
	return 1
}

func writeOverview(w io.Writer, cmds []*Command) {
	fmt.Fprint(w, "lesson works with NRE Labs / Antidote lessons.\n\nUsage:\n  lesson COMMAND [flags] [args]\n\nCommands:\n")
	for _, c := range cmds {
		fmt.Fprintf(w, "  %-10s %s\n", c.Name, c.Summary)
	}
	fmt.Fprint(w, "\nRun `lesson COMMAND --help` for a command's flags.\n")
}

func writeCommandHelp(w io.Writer, c *Command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: lesson %s %s\n\n%s\n", c.Name, c.Args, strings.TrimSpace(c.Help))
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprint(w, "\nFlags:\n")
		fs.SetOutput(w)
		fs.PrintDefaults()
		fs.SetOutput(io.Discard)
	}
}

// stringList is a repeatable string flag.
type stringList []string

func (s *stringList) String() string { return strings.Join(*s, ",") }

func (s *stringList) Set(v string) error {
	*s = append(*s, v)
	return nil
}

// writeJSON writes one indented JSON document (the --json outputs).
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
