package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/termio"
	"golang.org/x/crypto/ssh"
	"golang.org/x/term"
)

func sshCommand() *Command {
	return &Command{
		Name:    "ssh",
		Args:    "[--instance NAME] ENDPOINT [-- COMMAND...]",
		Summary: "log in to an endpoint (or run a command on it) over SSH",
		Help: `
Opens a shell on an endpoint as its image's SSH user, over its management
address, verifying the host keys the image was built with; no password to
type. With a COMMAND (after --), runs it instead, prints its output and exits
with its status.`,
		Operand: OperandEndpoint,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			inf := addInstanceFlags(fs)
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return fmt.Errorf("%w: give an ENDPOINT", ErrUsage)
				}
				inst, err := inf.open(env)
				if err != nil {
					return err
				}
				c, err := inst.DialSSH(ctx, args[0])
				if err != nil {
					return err
				}
				defer c.Close()
				if len(args) > 1 {
					return runRemote(ctx, env, c, strings.Join(args[1:], " "))
				}
				return interactive(env, c.Client())
			}
		},
	}
}

// runRemote runs one command and passes its output and exit status on.
func runRemote(ctx context.Context, env *Env, c *configure.SSHClient, cmd string) error {
	res, err := c.Run(ctx, cmd)
	fmt.Fprint(env.Stdout, res.Output)
	var ee *configure.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: exit status %d", errReported, ee.Status)
	}
	return err
}

// interactive runs a login shell; on a terminal with a pty that follows
// the window size.
func interactive(env *Env, client *ssh.Client) error {
	sess, err := client.NewSession()
	if err != nil {
		return err
	}
	defer sess.Close()
	sess.Stdin, sess.Stdout, sess.Stderr = env.Stdin, env.Stdout, env.Stderr
	if f, ok := env.Stdin.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		w, h, err := term.GetSize(int(f.Fd()))
		if err != nil {
			w, h = 80, 24
		}
		tt := os.Getenv("TERM")
		if tt == "" {
			tt = "xterm"
		}
		if err := sess.RequestPty(tt, h, w, ssh.TerminalModes{ssh.ECHO: 1}); err != nil {
			return err
		}
		restore, _ := termio.Raw(env.Stdin)
		defer restore()
		winch := make(chan os.Signal, 1)
		signal.Notify(winch, syscall.SIGWINCH)
		defer signal.Stop(winch)
		go func() {
			for range winch {
				if w, h, err := term.GetSize(int(f.Fd())); err == nil {
					sess.WindowChange(h, w)
				}
			}
		}()
	}
	if err := sess.Shell(); err != nil {
		return err
	}
	err = sess.Wait()
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("%w: exit status %d", errReported, ee.ExitStatus())
	}
	if errors.Is(err, io.EOF) {
		return nil
	}
	return err
}
