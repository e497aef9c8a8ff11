package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// killWait bounds how long StopProcesses waits for killed processes to go.
const killWait = 10 * time.Second

// Process is a process of a launch found on this machine by [Processes].
type Process struct {
	PID int
	// Launcher: an `endpoint run` (else QEMU).
	Launcher bool
}

// Processes lists the processes of the launches whose state directories
// lie under root, the caller excepted: launchers (`endpoint run` with
// --state ROOT/…, as [Launch.Args] renders it) and QEMU (its sockets in
// ROOT/…). It reads /proc; a process that ends meanwhile is left out.
func Processes(root string) []Process {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	marker := filepath.Clean(root) + "/"
	self := os.Getpid()
	var out []Process
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		if len(args) < 2 || !strings.Contains(string(raw), marker) {
			continue
		}
		launcher := args[1] == "run" && hasStateArg(args, marker)
		if launcher || strings.Contains(filepath.Base(args[0]), "qemu-system") {
			out = append(out, Process{PID: pid, Launcher: launcher})
		}
	}
	return out
}

// hasStateArg reports whether args carry --state with a path under marker.
func hasStateArg(args []string, marker string) bool {
	for k, a := range args {
		if (a == "--state" || a == "-state") && k+1 < len(args) && strings.HasPrefix(args[k+1], marker) {
			return true
		}
		if v, ok := strings.CutPrefix(a, "--state="); ok && strings.HasPrefix(v, marker) {
			return true
		}
	}
	return false
}

// StopProcesses stops every process of the launches under root (see
// [Processes]): SIGTERM to the launchers (each powers its guest off
// gracefully), a wait of up to grace (or until ctx ends), then SIGKILL to
// whatever is left, and a wait until it is gone. A zero grace kills at
// once. The error lists what survived SIGKILL.
func StopProcesses(ctx context.Context, root string, grace time.Duration) error {
	procs := Processes(root)
	if len(procs) == 0 {
		return nil
	}
	if grace > 0 {
		for _, p := range procs {
			if p.Launcher {
				_ = syscall.Kill(p.PID, syscall.SIGTERM)
			}
		}
		gctx, cancel := context.WithTimeout(ctx, grace)
		defer cancel()
		if waitGone(gctx, root) {
			return nil
		}
	}
	for _, p := range Processes(root) {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	kctx, kcancel := context.WithTimeout(context.WithoutCancel(ctx), killWait)
	defer kcancel()
	if !waitGone(kctx, root) {
		return fmt.Errorf("processes still running under %s after SIGKILL: %v", root, Processes(root))
	}
	return nil
}

// waitGone polls until no process under root is left (or only zombies,
// which their parents reap) or ctx ends.
func waitGone(ctx context.Context, root string) bool {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		if allZombies(Processes(root)) {
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

func allZombies(ps []Process) bool {
	for _, p := range ps {
		if !zombie(p.PID) {
			return false
		}
	}
	return true
}

// LauncherRunning reports whether pid is a live launcher whose command
// line names stateDir (guarding against a reused pid). A zombie — ended,
// awaiting its parent's wait — is not running.
func LauncherRunning(pid int, stateDir string) bool {
	if pid <= 0 {
		return false
	}
	raw, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil || !strings.Contains(string(raw), stateDir) {
		return false
	}
	return !zombie(pid) && !errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// Zombie reports whether pid has exited and only awaits its parent's wait.
func Zombie(pid int) bool { return zombie(pid) }

// zombie reports whether pid has exited and only awaits its parent's wait
// (state Z in /proc/PID/stat).
func zombie(pid int) bool {
	st, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	i := strings.LastIndexByte(string(st), ')')
	return i >= 0 && i+2 < len(st) && st[i+2] == 'Z'
}
