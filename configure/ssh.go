package configure

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// SSH is the configurator of the ssh method (an endpointkit extension):
// stageN/configs/<ep>.sh runs on the target as the target's user.
type SSH struct {
	Dial DialOptions
}

var _ Configurator = (*SSH)(nil)

// Configure runs the stage's script on t.
func (s *SSH) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	script, err := os.ReadFile(sc.File)
	if err != nil {
		return Report{}, fmt.Errorf("%w: %w", ErrMissingConfig, err)
	}
	c, err := DialSSH(ctx, t, s.Dial)
	if err != nil {
		return Report{}, err
	}
	defer c.Close()
	results, err := c.RunScript(ctx, sc.File, script)
	rep := Report{}
	var all strings.Builder
	for _, r := range results {
		rep.Steps = append(rep.Steps, Step{Name: r.Command, Line: r.Line, OK: r.Status == 0, Status: r.Status, Output: r.Output, Duration: r.Duration})
		all.WriteString(r.Output)
	}
	rep.Output = tail(all.String(), tailSize, false)
	return rep, err
}

// SSHClient is an SSH connection to a target, with the operations a Linux
// endpoint needs. Commands that need root run through `sudo -n` unless
// the user is root (the image's config user needs password-less sudo, as
// Antidote's images gave it).
type SSHClient struct {
	c    *ssh.Client
	t    Target
	sudo string
}

// CommandResult is one command's outcome.
type CommandResult struct {
	Command  string
	Line     int // line in the script, for scripts
	Status   int
	Output   string // stdout then stderr (scripts: interleaved)
	Duration time.Duration
}

// DialSSH connects to t's SSH port, verifying its host key, retrying
// transient failures. Close the client when done.
func DialSSH(ctx context.Context, t Target, o DialOptions) (*SSHClient, error) {
	c, err := dialSSH(ctx, t, t.SSHAddr(), o)
	if err != nil {
		return nil, err
	}
	sudo := "sudo -n "
	if t.User == "root" {
		sudo = ""
	}
	return &SSHClient{c: c, t: t, sudo: sudo}, nil
}

// Close closes the connection.
func (c *SSHClient) Close() error { return c.c.Close() }

// Client is the underlying x/crypto/ssh client.
func (c *SSHClient) Client() *ssh.Client { return c.c }

// exec runs cmd with stdin and returns stdout, stderr and the exit status.
func (c *SSHClient) exec(ctx context.Context, cmd string, stdin io.Reader) (stdout, stderr string, status int, err error) {
	sess, err := c.c.NewSession()
	if err != nil {
		return "", "", -1, fmt.Errorf("ssh session on %s: %w", c.t.Name, err)
	}
	defer sess.Close()
	// Separate buffers: x/crypto writes stdout and stderr concurrently.
	o, e := newTail(64*1024), newTail(16*1024)
	sess.Stdout, sess.Stderr, sess.Stdin = o, e, stdin
	stop := context.AfterFunc(ctx, func() { sess.Signal(ssh.SIGKILL); sess.Close() })
	err = sess.Run(cmd)
	stop()
	if ctx.Err() != nil {
		return o.String(), e.String(), -1, fmt.Errorf("%s: %w", text.FirstLine(cmd), ctx.Err())
	}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		return o.String(), e.String(), ee.ExitStatus(), nil
	}
	if err != nil {
		return o.String(), e.String(), -1, fmt.Errorf("%s: %w", text.FirstLine(cmd), err)
	}
	return o.String(), e.String(), 0, nil
}

// Run runs one shell command. A non-zero exit is an [*ExitError] (and the
// result is still returned).
func (c *SSHClient) Run(ctx context.Context, cmd string) (CommandResult, error) {
	start := time.Now()
	so, se, st, err := c.exec(ctx, cmd, nil)
	r := CommandResult{Command: cmd, Status: st, Output: so + se, Duration: time.Since(start)}
	if err != nil {
		return r, err
	}
	if st != 0 {
		return r, &ExitError{Command: cmd, Status: st, Output: r.Output}
	}
	return r, nil
}

// scriptRunner feeds a script to bash (or sh when the target has no bash).
const scriptRunner = `if command -v bash >/dev/null 2>&1; then exec bash -s; else exec sh -s; fi`

// RunScript runs script (named name in errors) on the target, fed on
// stdin to bash, or sh when there is no bash, with `set -e`. Under bash
// each executed command gets its own result (line, exit status, output);
// under sh the whole script is one result. A failure is an [*ExitError]
// naming name and the failing command's line.
func (c *SSHClient) RunScript(ctx context.Context, name string, script []byte) ([]CommandResult, error) {
	nb := make([]byte, 8)
	rand.Read(nb)
	nonce := "@@endpointkit-" + hex.EncodeToString(nb)
	// One preamble line: the script's line n is line n+1.
	preamble := `exec 2>&1; set -e; if [ -n "${BASH_VERSION:-}" ]; then trap 'printf "\n%s %s %s\n" ` + nonce + ` "$LINENO" "$?"' DEBUG; fi` + "\n"
	start := time.Now()
	so, se, st, err := c.exec(ctx, scriptRunner, io.MultiReader(strings.NewReader(preamble), bytes.NewReader(script)))
	results := splitScriptOutput(so+se, nonce, st, script)
	if len(results) > 0 {
		results[len(results)-1].Duration = time.Since(start) // per-command times are not measured
	}
	if err != nil {
		return results, err
	}
	if st != 0 {
		line := 0
		if len(results) > 0 {
			line = results[len(results)-1].Line
		}
		return results, &ExitError{Command: name, Line: line, Status: st, Output: tail(so+se, tailSize, false)}
	}
	return results, nil
}

// splitScriptOutput cuts a script's output at the DEBUG-trap markers
// ("\n<nonce> <line> <status of the previous command>\n").
func splitScriptOutput(out, nonce string, exit int, script []byte) []CommandResult {
	lines := strings.Split(string(script), "\n")
	var res []CommandResult
	var cur *CommandResult
	var body strings.Builder
	flush := func(status int) {
		if cur != nil {
			cur.Status = status
			cur.Output = strings.TrimRight(body.String(), "\n")
			res = append(res, *cur)
		}
		body.Reset()
	}
	for _, l := range strings.SplitAfter(out, "\n") {
		if rest, ok := strings.CutPrefix(l, nonce+" "); ok {
			f := strings.Fields(rest)
			if len(f) == 2 {
				ln, _ := strconv.Atoi(f[0])
				prev, _ := strconv.Atoi(f[1])
				flush(prev)
				ln-- // the preamble line
				src := ""
				if ln >= 1 && ln <= len(lines) {
					src = strings.TrimSpace(lines[ln-1])
				}
				cur = &CommandResult{Command: src, Line: ln}
				continue
			}
		}
		body.WriteString(l)
	}
	if cur == nil { // no bash: one result for the whole script
		return []CommandResult{{Command: "script", Status: exit, Output: out}}
	}
	flush(exit)
	return res
}

// FileCopy is one file to copy from the lesson directory to the target.
type FileCopy struct {
	Src  string      // relative to the lesson directory
	Dst  string      // absolute path on the target
	Mode os.FileMode // 0: the source's permissions
}

// Copy copies files from lessonDir to the target over SFTP, creating
// parent directories. Sources must stay inside lessonDir.
func (c *SSHClient) Copy(ctx context.Context, lessonDir string, files ...FileCopy) error {
	sc, err := sftp.NewClient(c.c, sftp.UseConcurrentWrites(true))
	if err != nil {
		return fmt.Errorf("sftp on %s: %w", c.t.Name, err)
	}
	defer sc.Close()
	stop := closeOnDone(ctx, sc)
	defer stop()
	for _, f := range files {
		if err := copyOne(sc, lessonDir, f); err != nil {
			if ctx.Err() != nil {
				return fmt.Errorf("copy %s: %w", f.Src, ctx.Err())
			}
			return err
		}
	}
	return nil
}

func copyOne(sc *sftp.Client, lessonDir string, f FileCopy) error {
	if !filepath.IsLocal(f.Src) {
		return fmt.Errorf("%w: copy source %q must be a path inside the lesson directory", ErrBadConfig, f.Src)
	}
	if !path.IsAbs(f.Dst) {
		return fmt.Errorf("%w: copy destination %q must be an absolute path", ErrBadConfig, f.Dst)
	}
	src := filepath.Join(lessonDir, f.Src)
	in, err := os.Open(src)
	if err != nil {
		return fmt.Errorf("copy: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	mode := f.Mode
	if mode == 0 {
		mode = st.Mode().Perm()
	}
	if err := sc.MkdirAll(path.Dir(f.Dst)); err != nil {
		return fmt.Errorf("copy %s: mkdir %s: %w", src, path.Dir(f.Dst), err)
	}
	out, err := sc.OpenFile(f.Dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
	if err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, f.Dst, err)
	}
	if _, err := out.ReadFrom(in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s to %s: %w", src, f.Dst, err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, f.Dst, err)
	}
	return sc.Chmod(f.Dst, mode)
}

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$`)
	ifaceRE    = regexp.MustCompile(`^[A-Za-z0-9_.:@-]{1,15}$`)
	serviceRE  = regexp.MustCompile(`^[A-Za-z0-9_.@:-]{1,128}$`)
)

// SetHostname sets the running hostname and /etc/hostname.
func (c *SSHClient) SetHostname(ctx context.Context, name string) error {
	if len(name) > 253 || !hostnameRE.MatchString(name) {
		return fmt.Errorf("%w: %q is not a valid hostname", ErrBadConfig, name)
	}
	q := text.ShellQuote(name)
	_, err := c.Run(ctx, c.sudo+"sh -c "+text.ShellQuote("hostname "+q+" && printf '%s\\n' "+q+" > /etc/hostname"))
	return err
}

// SetAddress adds addr to the interface (replacing it if present) and
// sets the link up.
func (c *SSHClient) SetAddress(ctx context.Context, iface string, addr netip.Prefix) error {
	if !ifaceRE.MatchString(iface) {
		return fmt.Errorf("%w: %q is not an interface name", ErrBadConfig, iface)
	}
	if !addr.IsValid() {
		return fmt.Errorf("%w: invalid address for %s", ErrBadConfig, iface)
	}
	_, err := c.Run(ctx, fmt.Sprintf("%sip addr replace %s dev %s && %sip link set dev %s up", c.sudo, addr, text.ShellQuote(iface), c.sudo, text.ShellQuote(iface)))
	return err
}

// RestartService restarts a service with systemd when it runs, else the
// service's /etc/init.d script, else service(8).
func (c *SSHClient) RestartService(ctx context.Context, name string) error {
	if !serviceRE.MatchString(name) {
		return fmt.Errorf("%w: %q is not a service name", ErrBadConfig, name)
	}
	q := text.ShellQuote(name)
	script := `if [ -d /run/systemd/system ] && command -v systemctl >/dev/null; then exec systemctl restart ` + q +
		`; elif [ -x /etc/init.d/` + name + ` ]; then exec /etc/init.d/` + name + ` restart` +
		`; elif command -v service >/dev/null; then exec service ` + q + ` restart` +
		`; else echo "no service manager found for ` + name + `" >&2; exit 127; fi`
	_, err := c.Run(ctx, c.sudo+"sh -c "+text.ShellQuote(script))
	return err
}
