package configure

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
)

// PythonEnv names the Python interpreter of the python method when
// Python.Interpreter is empty (a path, or a name looked up on PATH).
const PythonEnv = "ENDPOINTKIT_PYTHON"

// Python is the configurator of the python method: stageN/configs/<ep>.py
// runs in its directory with Antidote's environment —
// ANTIDOTE_TARGET_HOST, ANTIDOTE_TARGET_USERNAME, ANTIDOTE_TARGET_PASSWORD
// and, for older lessons, SYRINGE_TARGET_HOST — plus ANTIDOTE_TARGET_PORT
// (an endpointkit addition: endpoints may answer SSH on a forwarded port)
// and ANTIDOTE_TARGET_KNOWN_HOSTS, a known_hosts file with the target's
// pinned host keys (see [KnownHostsEnv]) for the script to verify the
// server against (Antidote's scripts used paramiko's AutoAddPolicy, which
// trusts anything: point them at this file and RejectPolicy). A target
// without a host-key policy is refused, as by every method.
//
// Lesson scripts import libraries (paramiko, scp, requests, jinja2, yaml
// in the NRE Labs curriculum) that only some interpreters have, so which
// one runs is explicit: Interpreter, else $ENDPOINTKIT_PYTHON, else the
// first python3 on PATH. Every failure is a *PythonError naming it.
type Python struct {
	// Interpreter is the Python program: a path or a name looked up on
	// PATH (the CLI's --python). Default: $ENDPOINTKIT_PYTHON, else python3.
	Interpreter string
}

var _ Configurator = (*Python)(nil)

// interpreter is the program to run and where that choice came from.
func (p *Python) interpreter() (prog, from string) {
	switch {
	case p.Interpreter != "":
		return p.Interpreter, "given with --python (Python.Interpreter)"
	case os.Getenv(PythonEnv) != "":
		return os.Getenv(PythonEnv), "from $" + PythonEnv
	}
	return "python3", "the first python3 on PATH"
}

// Configure runs the stage's script for t.
func (p *Python) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	prog, from := p.interpreter()
	perr := &PythonError{Interpreter: prog, From: from}
	path, err := exec.LookPath(prog)
	if err != nil {
		perr.Err = err
		return Report{Steps: []Step{{Name: prog + " " + filepath.Base(sc.File), Status: -1}}}, perr
	}
	perr.Path = path
	kh, cleanup, err := scriptKnownHosts(ctx, t)
	if err != nil {
		return Report{}, err
	}
	defer cleanup()
	out := newTail(tailSize)
	cmd := exec.CommandContext(ctx, path, filepath.Base(sc.File))
	cmd.Dir = filepath.Dir(sc.File)
	cmd.Env = append(os.Environ(),
		"ANTIDOTE_TARGET_HOST="+t.Address,
		"ANTIDOTE_TARGET_PORT="+strconv.Itoa(t.sshPort()),
		"ANTIDOTE_TARGET_USERNAME="+t.User,
		"ANTIDOTE_TARGET_PASSWORD="+t.Password.Reveal(),
		"SYRINGE_TARGET_HOST="+t.Address,
		KnownHostsEnv+"="+kh,
		"PYTHONUNBUFFERED=1",
	)
	err = runLocal(ctx, cmd, sc.File, out)
	rep := Report{Output: out.String()}
	status := 0
	if ee, ok := err.(*ExitError); ok {
		status = ee.Status
	}
	rep.Steps = []Step{{Name: fmt.Sprintf("%s %s", path, filepath.Base(sc.File)), OK: err == nil, Status: status, Output: rep.Output}}
	if err == nil {
		return rep, nil
	}
	perr.Err = err
	perr.Module = missingModule(rep.Output)
	perr.Executable, perr.Version = describePython(path)
	return rep, perr
}

// ErrMissingModule matches a *PythonError for a script importing a module
// its interpreter does not have.
var ErrMissingModule = errors.New("python module not installed")

// PythonError is a failure of the python method. It names the interpreter
// — as given, the executable it resolved to (a pyenv shim or a virtualenv
// link is followed) and its version — and where that choice came from,
// and, when a script imported a module the interpreter lacks, the module.
// Err is the underlying error (an *ExitError for a script that failed).
type PythonError struct {
	Interpreter string // as given, e.g. "python3"
	From        string // how it was chosen: --python, $ENDPOINTKIT_PYTHON or PATH
	Path        string // found on PATH; "" when not found
	Executable  string // sys.executable, when the interpreter says
	Version     string // e.g. "3.11.2", when the interpreter says
	Module      string // the missing module, when that is the failure
	Err         error
}

func (e *PythonError) Error() string {
	if e.Path == "" {
		return fmt.Sprintf("python interpreter %q (%s) not found: %v; install python3 or point at an interpreter with --python PATH or %s=PATH",
			e.Interpreter, e.From, e.Err, PythonEnv)
	}
	py := e.Path
	if e.Executable != "" && e.Executable != e.Path {
		py += " → " + e.Executable
	}
	if e.Version != "" {
		py += " (Python " + e.Version + ", " + e.From + ")"
	} else {
		py += " (" + e.From + ")"
	}
	if e.Module != "" {
		return fmt.Sprintf("python module %q is not installed for %s: %s, or point at an interpreter that has it with --python PATH or %s=PATH (%v)",
			e.Module, py, installHint(e.Module, e.Path), PythonEnv, e.Err)
	}
	return fmt.Sprintf("python %s: %v", py, e.Err)
}

// Unwrap returns the underlying error.
func (e *PythonError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrMissingModule) true for a missing module.
func (e *PythonError) Is(target error) bool { return target == ErrMissingModule && e.Module != "" }

var moduleNotFound = regexp.MustCompile(`ModuleNotFoundError: No module named '([^'.]+)`)

// missingModule is the top-level module a traceback says is missing.
func missingModule(output string) string {
	if m := moduleNotFound.FindAllStringSubmatch(output, -1); len(m) > 0 {
		return m[len(m)-1][1]
	}
	return ""
}

// pythonPackages are, for the modules NRE Labs lessons import, their
// Debian package (`make deps` installs them for Debian's /usr/bin/python3)
// and their name on PyPI.
var pythonPackages = map[string][2]string{
	"paramiko": {"python3-paramiko", "paramiko"}, "scp": {"python3-scp", "scp"},
	"requests": {"python3-requests", "requests"}, "jinja2": {"python3-jinja2", "jinja2"},
	"yaml": {"python3-yaml", "pyyaml"}, "ncclient": {"python3-ncclient", "ncclient"},
	"netmiko": {"python3-netmiko", "netmiko"}, "jnpr": {"python3-junos-eznc", "junos-eznc"},
	"lxml": {"python3-lxml", "lxml"},
}

func installHint(module, path string) string {
	if pkg, ok := pythonPackages[module]; ok {
		return fmt.Sprintf("install it (Debian: apt-get install %s, for /usr/bin/python3 — `make deps` does; or `%s -m pip install %s`)", pkg[0], path, pkg[1])
	}
	return fmt.Sprintf("install it (`%s -m pip install %s`)", path, module)
}

// describePython asks an interpreter for its executable and version; ""
// for what it does not say within a few seconds.
func describePython(path string) (exe, version string) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "-c", "import sys; print(sys.executable); print(sys.version.split()[0])").Output()
	if err != nil {
		return "", ""
	}
	exe, version, _ = strings.Cut(strings.TrimSpace(string(out)), "\n")
	return exe, version
}
