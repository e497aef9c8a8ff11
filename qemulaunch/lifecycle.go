package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ExitReason says how QEMU ended.
type ExitReason string

// Exit reasons, from most to least graceful.
const (
	// ExitPoweredOff: the guest powered itself off (nobody asked).
	ExitPoweredOff ExitReason = "poweroff"
	// ExitStopped: Stop asked for ACPI poweroff and the guest complied
	// within the grace period.
	ExitStopped ExitReason = "stopped"
	// ExitQuit: the guest ignored poweroff; Stop told QEMU to quit.
	ExitQuit ExitReason = "quit"
	// ExitKilled: Stop or Kill had to SIGKILL QEMU.
	ExitKilled ExitReason = "killed"
	// ExitDied: QEMU ended without being asked and not by a guest
	// poweroff — killed by someone else, crashed, guest panic, exit code
	// other than 0.
	ExitDied ExitReason = "died"
)

// ErrDied is wrapped by the error Wait returns for [ExitDied].
var ErrDied = errors.New("qemulaunch: QEMU ended unexpectedly")

// Exit is how QEMU ended.
type Exit struct {
	Reason ExitReason
	// Shutdown is the reason of QEMU's SHUTDOWN event ("guest-shutdown",
	// "host-qmp-quit", "host-signal", "guest-panic", …); "" when QEMU died
	// without one.
	Shutdown string
	Code     int            // exit code; -1 when killed by a signal
	Signal   syscall.Signal // the signal that killed QEMU, if any
	Stderr   string         // the tail of QEMU's stderr
}

func (e Exit) String() string {
	s := string(e.Reason)
	if e.Shutdown != "" {
		s += " (" + e.Shutdown + ")"
	}
	if e.Signal != 0 {
		s += fmt.Sprintf(", signal %v", e.Signal)
	} else {
		s += fmt.Sprintf(", exit code %d", e.Code)
	}
	return s
}

func classifyExit(req ExitReason, shutdown *Event, ps *os.ProcessState, werr error) Exit {
	ex := Exit{Code: -1}
	if ps != nil {
		ex.Code = ps.ExitCode()
		if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			ex.Signal = ws.Signal()
		}
	}
	if shutdown != nil {
		if r, ok := shutdown.Data["reason"].(string); ok {
			ex.Shutdown = r
		}
	}
	clean := ex.Code == 0 && ex.Signal == 0 && werr == nil
	guestOff := clean && ex.Shutdown == "guest-shutdown"
	switch {
	case req == ExitKilled && ex.Signal == syscall.SIGKILL:
		ex.Reason = ExitKilled
	case req == ExitQuit && clean:
		ex.Reason = ExitQuit
	case req != "" && guestOff:
		ex.Reason = ExitStopped
	case guestOff:
		ex.Reason = ExitPoweredOff
	default:
		ex.Reason = ExitDied
	}
	return ex
}

// Wait blocks until QEMU has exited and cleanup has finished, and reports
// how it ended. The error wraps [ErrDied] when QEMU ended unexpectedly, or
// is ctx's error when ctx ends first (cancelling only stops waiting).
func (vm *VM) Wait(ctx context.Context) (Exit, error) {
	select {
	case <-vm.exited:
	case <-ctx.Done():
		return Exit{}, ctx.Err()
	}
	vm.mu.Lock()
	ex := vm.exit
	vm.mu.Unlock()
	if ex.Reason == ExitDied {
		return ex, fmt.Errorf("%w: %s", ErrDied, ex)
	}
	return ex, nil
}

// Stop shuts the VM down gracefully: system_powerdown (an ACPI power
// button press), then up to the grace period (Timeouts.StopGrace, scaled
// under TCG) for the guest to power off, then QMP quit, then SIGKILL. It
// returns after QEMU has exited and cleanup has run; use [VM.Wait] to learn
// which step ended it.
//
// ctx shortens the graceful part: when ctx ends before the guest has
// powered off, Stop escalates at once to quit and SIGKILL — cancelling
// never leaves QEMU running. Stop on a VM that already exited returns nil.
func (vm *VM) Stop(ctx context.Context) error {
	select {
	case <-vm.exited:
		return nil
	default:
	}
	writeHealth(vm.plan.Dir.Health(), HealthStopping, "")
	vm.mu.Lock()
	mon := vm.mon
	vm.mu.Unlock()
	grace, cancel := context.WithTimeout(ctx, vm.plan.Timeouts.StopGrace)
	defer cancel()
	if mon != nil {
		vm.request(ExitStopped)
		if err := mon.run(grace, "system_powerdown", nil, nil); err != nil {
			vm.log.Warn("system_powerdown failed; quitting", "err", err)
		} else {
			vm.log.Info("asked the guest to power off", "grace", vm.plan.Timeouts.StopGrace)
			select {
			case <-vm.procDone:
				<-vm.exited
				return nil
			case <-grace.Done():
				vm.log.Warn("guest did not power off in time; quitting QEMU")
			}
		}
		// quit must be tried even when ctx is already cancelled.
		qctx, qcancel := context.WithTimeout(context.Background(), vm.plan.Timeouts.QMPCommand)
		vm.request(ExitQuit)
		err := mon.run(qctx, "quit", nil, nil)
		qcancel()
		if err != nil && !errors.Is(err, ErrQMPClosed) {
			vm.log.Debug("quit", "err", err) // EOF racing the reply is normal
		}
		select {
		case <-vm.procDone:
			<-vm.exited
			return nil
		case <-time.After(3 * time.Second):
			vm.log.Warn("QEMU did not quit; killing it")
		}
	}
	return vm.Kill()
}

// Kill sends SIGKILL to QEMU and waits for it to exit and for cleanup.
func (vm *VM) Kill() error {
	vm.kill()
	select {
	case <-vm.exited:
		return nil
	case <-time.After(30 * time.Second):
		return fmt.Errorf("qemulaunch: QEMU pid %d survived SIGKILL for 30s", vm.cmd.Process.Pid)
	}
}

func (vm *VM) kill() {
	vm.request(ExitKilled)
	select {
	case <-vm.procDone:
	default:
		vm.cmd.Process.Kill()
	}
}

func (vm *VM) request(r ExitReason) {
	vm.mu.Lock()
	vm.stopReq = r
	vm.mu.Unlock()
}
