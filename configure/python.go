package configure

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"

	"github.com/endpointkit/endpointkit/endpoint"
)

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
type Python struct {
	// Interpreter is the Python program (default python3 from PATH).
	Interpreter string
}

var _ Configurator = (*Python)(nil)

// Configure runs the stage's script for t.
func (p *Python) Configure(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
	py := p.Interpreter
	if py == "" {
		py = "python3"
	}
	kh, cleanup, err := scriptKnownHosts(ctx, t)
	if err != nil {
		return Report{}, err
	}
	defer cleanup()
	out := newTail(tailSize)
	cmd := exec.CommandContext(ctx, py, filepath.Base(sc.File))
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
	rep.Steps = []Step{{Name: fmt.Sprintf("%s %s", py, filepath.Base(sc.File)), OK: err == nil, Status: status, Output: rep.Output}}
	return rep, err
}
