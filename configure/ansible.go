package configure

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"golang.org/x/crypto/ssh"
)

// Ansible is the configurator of the ansible method: ansible-playbook runs
// stageN/configs/<ep>.yml (from its directory) against an inventory with
// one host, the endpoint, named after it. The inventory holds the
// address, port, user, password (as an unsafe, never-templated string),
// key file and the host-key policy; it is written 0600 into a private
// temporary directory and removed afterwards. Playbooks that set
// ansible_user/ansible_password themselves (Antidote's did) still work.
type Ansible struct {
	// Playbook is the ansible-playbook program (default from PATH).
	Playbook string
	// Dial is used to fetch a pinned host key whose public half the
	// policy lacks.
	Dial   DialOptions
	Logger *slog.Logger
}

var _ Configurator = (*Ansible)(nil)

// Configure runs the stage's playbook against t.
func (a *Ansible) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	prog := a.Playbook
	if prog == "" {
		prog = "ansible-playbook"
	}
	log := a.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	dir, err := os.MkdirTemp("", "endpointkit-ansible-")
	if err != nil {
		return Report{}, err
	}
	defer os.RemoveAll(dir)
	cpDir := filepath.Join(dir, "cp")
	if err := os.Mkdir(cpDir, 0o700); err != nil {
		return Report{}, err
	}
	defer closeControlMasters(cpDir)

	sshArgs, checking, err := a.hostKeyArgs(ctx, t, dir)
	if err != nil {
		return Report{}, err
	}
	inv := filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(inv, []byte(ansibleInventory(t, sshArgs)), 0o600); err != nil {
		return Report{}, err
	}

	stdout := newTail(16 << 20)
	stderr := newTail(tailSize)
	cmd := exec.CommandContext(ctx, prog, "-i", inv, sc.File)
	cmd.Dir = filepath.Dir(sc.File)
	cmd.Stdout, cmd.Stderr = stdout, stderr
	cmd.Env = append(os.Environ(),
		"ANSIBLE_STDOUT_CALLBACK=json",
		"ANSIBLE_HOST_KEY_CHECKING="+checking,
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+cpDir,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(dir, "tmp"),
		"ANSIBLE_RETRY_FILES_ENABLED=False",
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_FORCE_COLOR=0",
	)
	log.Debug("running ansible-playbook", "endpoint", t.Name, "playbook", sc.File)
	start := time.Now()
	runErr := runLocal(ctx, cmd, prog, stderr)
	res, perr := ParseAnsibleJSON(stdout.String())
	rep := Report{Output: tail(stderr.String(), tailSize, false)}
	if perr == nil {
		rep.Steps = res.steps(t.Name)
		rep.Output = tail(res.output(t.Name)+stderr.String(), tailSize, false)
	}
	log.Debug("ansible-playbook done", "endpoint", t.Name, "duration", time.Since(start), "error", runErr)
	if runErr == nil {
		return rep, nil
	}
	if ctx.Err() != nil {
		return rep, runErr
	}
	if perr == nil {
		if te := res.failure(t.Name); te != nil {
			te.Playbook = sc.File
			return rep, te
		}
	}
	all := stdout.String() + "\n" + stderr.String()
	if m := ansibleErrorAt.FindStringSubmatch(all); m != nil {
		return rep, fmt.Errorf("%s:%s:%s: %s: %w", m[1], m[2], m[3], ansibleErrorLine(all), ErrBadConfig)
	}
	if msg := ansibleErrorLine(all); msg != "" {
		return rep, fmt.Errorf("%s: %s: %w", sc.File, msg, runErr)
	}
	return rep, runErr
}

var ansibleErrorAt = regexp.MustCompile(`The error appears to be in '([^']+)': line (\d+), column (\d+)`)

func ansibleErrorLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if rest, ok := strings.CutPrefix(strings.TrimSpace(l), "ERROR! "); ok {
			return rest
		}
	}
	return ""
}

// hostKeyArgs returns ansible_ssh_common_args and ANSIBLE_HOST_KEY_CHECKING
// for t's policy, writing a known_hosts file into dir when keys are pinned.
func (a *Ansible) hostKeyArgs(ctx context.Context, t Target, dir string) (string, string, error) {
	if t.HostKeys.InsecureIgnore {
		return "-o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null", "False", nil
	}
	kh, err := knownHostsFile(ctx, t, a.Dial, dir)
	if err != nil {
		return "", "", err
	}
	return "-o StrictHostKeyChecking=yes -o UserKnownHostsFile=" + strconv.Quote(kh), "True", nil
}

func knownHostsName(t Target) string {
	if t.sshPort() == 22 {
		return t.Address
	}
	return "[" + t.Address + "]:" + strconv.Itoa(t.sshPort())
}

// fetchHostKey performs a handshake that verifies the server's key against
// t's policy and returns that key (authentication is not attempted).
func fetchHostKey(ctx context.Context, t Target, o DialOptions) (ssh.PublicKey, error) {
	probe := t
	probe.Password, probe.KeyFile = "", ""
	cfg, err := clientConfig(probe, t.SSHAddr())
	if err != nil {
		return nil, err
	}
	var got ssh.PublicKey
	verify := cfg.HostKeyCallback
	cfg.HostKeyCallback = func(h string, r net.Addr, k ssh.PublicKey) error {
		if err := verify(h, r, k); err != nil {
			return err
		}
		got = k
		return nil
	}
	actx, cancel := context.WithTimeout(ctx, o.withDefaults().AttemptTimeout)
	defer cancel()
	c, err := dialOnce(actx, t.SSHAddr(), cfg)
	if c != nil {
		c.Close()
	}
	if got != nil {
		return got, nil
	}
	return nil, err
}

// closeControlMasters stops the ssh ControlPersist masters ansible left in
// dir (they would otherwise outlive the run by a minute).
func closeControlMasters(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		exec.Command("ssh", "-o", "ControlPath="+filepath.Join(dir, e.Name()), "-O", "exit", "endpointkit").Run()
	}
}

// ansibleInventory renders the one-host YAML inventory. Values are JSON
// strings (valid YAML double-quoted scalars); the password is tagged
// !unsafe so Jinja never templates it.
func ansibleInventory(t Target, sshArgs string) string {
	q := func(s string) string { b, _ := json.Marshal(s); return string(b) }
	var b strings.Builder
	fmt.Fprintf(&b, "all:\n  hosts:\n    %s:\n", q(t.Name))
	fmt.Fprintf(&b, "      ansible_host: %s\n      ansible_port: %d\n", q(t.Address), t.sshPort())
	if t.User != "" {
		fmt.Fprintf(&b, "      ansible_user: %s\n", q(t.User))
	}
	if t.Password != "" {
		fmt.Fprintf(&b, "      ansible_password: !unsafe %s\n", q(t.Password.Reveal()))
		fmt.Fprintf(&b, "      ansible_become_password: !unsafe %s\n", q(t.Password.Reveal()))
	}
	if t.KeyFile != "" {
		fmt.Fprintf(&b, "      ansible_ssh_private_key_file: %s\n", q(t.KeyFile))
	}
	fmt.Fprintf(&b, "      ansible_ssh_common_args: %s\n", q(sshArgs))
	b.WriteString("      ansible_python_interpreter: auto_silent\n")
	return b.String()
}

// AnsibleRun is the decoded output of ansible's json stdout callback.
type AnsibleRun struct {
	Plays []struct {
		Play struct {
			Name string `json:"name"`
		} `json:"play"`
		Tasks []struct {
			Task struct {
				Name     string `json:"name"`
				Duration struct {
					Start string `json:"start"`
					End   string `json:"end"`
				} `json:"duration"`
			} `json:"task"`
			Hosts map[string]AnsibleHostResult `json:"hosts"`
		} `json:"tasks"`
	} `json:"plays"`
	Stats map[string]struct {
		Failures    int `json:"failures"`
		Unreachable int `json:"unreachable"`
		Changed     int `json:"changed"`
		OK          int `json:"ok"`
	} `json:"stats"`
}

// AnsibleHostResult is one host's result of one task.
type AnsibleHostResult struct {
	Action      string          `json:"action"`
	Changed     bool            `json:"changed"`
	Failed      bool            `json:"failed"`
	Unreachable bool            `json:"unreachable"`
	Skipped     bool            `json:"skipped"`
	Msg         json.RawMessage `json:"msg"`
	RC          *int            `json:"rc"`
	Stdout      string          `json:"stdout"`
	Stderr      string          `json:"stderr"`
}

func (h AnsibleHostResult) message() string {
	var s string
	if json.Unmarshal(h.Msg, &s) == nil {
		return s
	}
	return string(h.Msg)
}

// ParseAnsibleJSON decodes the json callback's output. Warnings printed
// before the JSON document are skipped.
func ParseAnsibleJSON(out string) (*AnsibleRun, error) {
	i := strings.Index(out, "{")
	if i < 0 {
		return nil, errors.New("ansible: no JSON output")
	}
	var r AnsibleRun
	dec := json.NewDecoder(bytes.NewReader([]byte(out[i:])))
	if err := dec.Decode(&r); err != nil {
		return nil, fmt.Errorf("ansible: JSON output: %w", err)
	}
	return &r, nil
}

func (r *AnsibleRun) steps(host string) []Step {
	var out []Step
	for _, p := range r.Plays {
		for _, tk := range p.Tasks {
			h, ok := tk.Hosts[host]
			if !ok {
				continue
			}
			name := tk.Task.Name
			if name == "" {
				name = h.Action
			}
			s := Step{Name: name, OK: !h.Failed && !h.Unreachable, Changed: h.Changed, Output: tail(strings.TrimSpace(h.Stdout+"\n"+h.Stderr+"\n"+h.message()), tailSize, false)}
			if h.RC != nil {
				s.Status = *h.RC
			}
			st, err1 := time.Parse(time.RFC3339Nano, tk.Task.Duration.Start)
			en, err2 := time.Parse(time.RFC3339Nano, tk.Task.Duration.End)
			if err1 == nil && err2 == nil {
				s.Duration = en.Sub(st)
			}
			out = append(out, s)
		}
	}
	return out
}

func (r *AnsibleRun) output(host string) string {
	var b strings.Builder
	for _, s := range r.steps(host) {
		status := "ok"
		switch {
		case !s.OK:
			status = "FAILED"
		case s.Changed:
			status = "changed"
		}
		fmt.Fprintf(&b, "TASK [%s] %s\n", s.Name, status)
		if s.Output != "" {
			b.WriteString(s.Output + "\n")
		}
	}
	return b.String()
}

// failure returns the task that stopped the play for host: the last failed
// or unreachable one (earlier failures may have been ignored).
func (r *AnsibleRun) failure(host string) *TaskError {
	var te *TaskError
	for _, p := range r.Plays {
		for _, tk := range p.Tasks {
			h, ok := tk.Hosts[host]
			if ok && (h.Failed || h.Unreachable) {
				msg := h.message()
				if msg == "" || msg == "null" {
					msg = lastLine(h.Stderr)
				}
				te = &TaskError{Play: p.Play.Name, Task: tk.Task.Name, Host: host, Message: msg, Unreachable: h.Unreachable}
			}
		}
	}
	return te
}
