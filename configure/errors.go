package configure

import (
	"errors"
	"fmt"
	"strings"

	"github.com/endpointkit/endpointkit/endpoint"
)

// Sentinel errors. Every error returned by [Run] for an endpoint is an
// [*Error] wrapping one of these or one of the typed errors below; test
// with errors.Is / errors.As.
var (
	// ErrUnreachable: the endpoint did not answer an SSH handshake before
	// the deadline.
	ErrUnreachable = errors.New("endpoint unreachable")
	// ErrAuth: the endpoint rejected the credentials.
	ErrAuth = errors.New("authentication rejected")
	// ErrHostKey: the endpoint's host key did not match the policy (see
	// [*HostKeyError] for the details).
	ErrHostKey = errors.New("host key mismatch")
	// ErrNoHostKeyPolicy: the target has no pinned keys, no known_hosts
	// file and no insecure opt-in.
	ErrNoHostKeyPolicy = errors.New("no host-key policy")
	// ErrMissingConfig: the stage's configuration file does not exist.
	ErrMissingConfig = errors.New("configuration file missing")
	// ErrBadConfig: the configuration file cannot be used as it is.
	ErrBadConfig = errors.New("bad configuration file")
	// ErrNeedsNapalm: a NAPALM driver other than junos was asked for and
	// python napalm is not installed.
	ErrNeedsNapalm = errors.New("needs python napalm")
	// ErrUnsupported: the method (or the server) cannot do what the stage
	// asks, e.g. a NETCONF server with neither :candidate nor
	// :writable-running.
	ErrUnsupported = errors.New("unsupported")
	// ErrTimeout: the endpoint's configuration did not finish before its
	// deadline.
	ErrTimeout = errors.New("timed out")
)

// Error is the error [Run] reports for one endpoint. It names the
// endpoint, the stage, the method and the configuration file.
type Error struct {
	Endpoint string
	Stage    int
	Method   endpoint.Method
	File     string
	Err      error
}

func (e *Error) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "configure: endpoint %q stage %d", e.Endpoint, e.Stage)
	if e.Method != endpoint.MethodNone {
		fmt.Fprintf(&b, " (%s", e.Method)
		if e.File != "" && !strings.Contains(e.Err.Error(), e.File) {
			fmt.Fprintf(&b, " %s", e.File)
		}
		b.WriteString(")")
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// HostKeyError says which key the server offered and what was expected.
// It matches [ErrHostKey] with errors.Is.
type HostKeyError struct {
	Address string
	Got     string   // fingerprint offered by the server
	Want    []string // pinned fingerprints, or the known_hosts file
}

func (e *HostKeyError) Error() string {
	return fmt.Sprintf("host key mismatch at %s: server offered %s, expected %s (check the image manifest's host keys or the known_hosts file; the endpoint may have been rebuilt — or someone is in the middle)",
		e.Address, e.Got, strings.Join(e.Want, " or "))
}

// Is reports whether target is [ErrHostKey].
func (e *HostKeyError) Is(target error) bool { return target == ErrHostKey }

// RPCError is a NETCONF rpc-error. It names the operation that failed.
type RPCError struct {
	Operation string // e.g. "edit-config", "commit", "load-configuration"
	Type      string
	Tag       string
	Severity  string
	Path      string
	Message   string
	Info      string
}

func (e *RPCError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "netconf %s: rpc-error %s", e.Operation, e.Tag)
	if e.Type != "" {
		fmt.Fprintf(&b, " (%s)", e.Type)
	}
	if e.Path != "" {
		fmt.Fprintf(&b, " at %s", e.Path)
	}
	if e.Message != "" {
		fmt.Fprintf(&b, ": %s", e.Message)
	}
	return b.String()
}

// ExitError is a command, script or program that exited with a non-zero
// status. For a script run over SSH, Line is the failing command's line in
// the script (0 when unknown).
type ExitError struct {
	Command string // what ran (a file path for scripts)
	Line    int
	Status  int
	Output  string // tail of the output
}

func (e *ExitError) Error() string {
	where := e.Command
	if e.Line > 0 {
		where = fmt.Sprintf("%s:%d", e.Command, e.Line)
	}
	msg := fmt.Sprintf("%s: exited with status %d", where, e.Status)
	if o := lastLine(e.Output); o != "" {
		msg += ": " + o
	}
	return msg
}

// TaskError is a failed (or unreachable) ansible task.
type TaskError struct {
	Playbook    string
	Play        string
	Task        string
	Host        string
	Message     string
	Unreachable bool
}

func (e *TaskError) Error() string {
	what := "failed"
	if e.Unreachable {
		what = "unreachable"
	}
	msg := fmt.Sprintf("%s: play %q task %q %s on %s", e.Playbook, e.Play, e.Task, what, e.Host)
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
