package qemulaunch

import (
	"fmt"
	"os"
	"path/filepath"
)

// StateDir is an instance state directory. Its layout is stable (other
// programs — the lesson orchestration, container health checks, `endpoint
// console` — read it):
//
//	endpoint.pid   pid of the launcher process (written by Start)
//	qemu.pid       pid of QEMU
//	qemu.argv      the QEMU command line, one argument per line
//	qmp.sock       QMP unix socket (QEMU is the server)
//	console.sock   serial console; any number of clients may attach
//	control.sock   the supervising launcher's control socket (AddNIC, RemoveNIC)
//	console.log    serial console output, size-bounded (older half in console.log.1)
//	overlay.qcow2  per-instance overlay over the image's base disk
//	health         one line: starting | ready | restarting | stopping | stopped | failed: REASON
//	restarts       JSON: how often the launcher restarted the VM, how it last ended (Restarts)
//	hostkeys       JSON: SSH host keys learned from the console, for images that list none (PinnedHostKeys)
//
// When QEMU exits, cleanup removes everything but console.log*, health
// (its final state), restarts and, with Config.KeepOverlay, overlay.qcow2.
// When the launcher ([Supervise]) ends cleanly it removes the directory
// too, unless told to keep it (SuperviseOptions.KeepState).
type StateDir string

// Paths inside a state directory.
func (d StateDir) LauncherPID() string   { return d.join("endpoint.pid") }
func (d StateDir) QEMUPID() string       { return d.join("qemu.pid") }
func (d StateDir) Argv() string          { return d.join("qemu.argv") }
func (d StateDir) QMPSocket() string     { return d.join("qmp.sock") }
func (d StateDir) ConsoleSocket() string { return d.join("console.sock") }
func (d StateDir) ControlSocket() string { return d.join("control.sock") }
func (d StateDir) ConsoleLog() string    { return d.join("console.log") }
func (d StateDir) Overlay() string       { return d.join("overlay.qcow2") }
func (d StateDir) Health() string        { return d.join("health") }
func (d StateDir) Restarts() string      { return d.join("restarts") }
func (d StateDir) HostKeys() string      { return d.join("hostkeys") }

func (d StateDir) join(name string) string { return filepath.Join(string(d), name) }

// StateDirOf is a launcher's state directory: state when given, else
// DefaultStateRoot/name, name defaulting to this host's name (a
// container's). The error wraps ErrUsage.
func StateDirOf(state, name string) (StateDir, error) {
	if state != "" {
		return StateDir(state), nil
	}
	if name == "" {
		var err error
		if name, err = os.Hostname(); err != nil {
			return "", fmt.Errorf("%w: give --name or --state", ErrUsage)
		}
	}
	return StateDir(filepath.Join(DefaultStateRoot, name)), nil
}
