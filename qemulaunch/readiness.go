package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// ErrNotReady wraps every readiness failure; the message names the layer
// (qmp, serial, ssh) and its deadline.
var ErrNotReady = errors.New("qemulaunch: guest not ready")

// Ready waits until the guest is usable, layer by layer, each layer with
// its own deadline (scaled under TCG):
//
//  1. QMP: QEMU reports status "running" (Timeouts.QMP).
//  2. serial: a console line matches the manifest's readiness.serialRegex
//     (Timeouts.Serial; skipped when the manifest has none).
//  3. hostkeys: when the manifest lists no SSH host keys, the guest's are
//     learned from its console and pinned (see [PinnedHostKeys]; Timeouts.Serial);
//  4. ssh: for each readiness.sshPorts guest port, a complete SSH handshake
//     — key exchange and, when the image names a user, password auth —
//     through its forward (Timeouts.SSH). A TCP connect is not enough: QEMU
//     user networking accepts before the guest listens. readiness.tcpPorts
//     get a connect only.
//
// Each layer waits on events (QMP events, console output) or retries with a
// short backoff (SSH: 10 ms doubling to 50 ms), so readiness is noticed
// within tens of milliseconds. Success writes "ready" to the health file.
// Ready returns early with an error when QEMU exits. ctx bounds the whole
// wait; cancelling it does not affect the VM.
func (vm *VM) Ready(ctx context.Context) error {
	t := vm.plan.Timeouts
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-vm.procDone:
			cancel()
		case <-ctx.Done():
		}
	}()
	layer := func(name string, d time.Duration, fn func(context.Context) error) error {
		lctx, lcancel := context.WithTimeout(ctx, d)
		defer lcancel()
		t0 := time.Now()
		err := fn(lctx)
		if err == nil {
			vm.log.Info("ready layer passed", "layer", name, "took", time.Since(t0).Round(time.Millisecond))
			return nil
		}
		select {
		case <-vm.procDone:
			return fmt.Errorf("%w: %s: QEMU exited while waiting: %v", ErrNotReady, name, err)
		default:
		}
		if lctx.Err() != nil && ctx.Err() == nil {
			return fmt.Errorf("%w: %s: not within %v: %v", ErrNotReady, name, d, err)
		}
		return fmt.Errorf("%w: %s: %v", ErrNotReady, name, err)
	}
	if err := layer("qmp", t.QMP, vm.waitRunning); err != nil {
		return err
	}
	r := vm.cfg.Image.Manifest.Readiness
	if r.SerialRegex != "" {
		re, err := regexp.Compile(r.SerialRegex)
		if err != nil {
			return fmt.Errorf("%w: %s: readiness.serialRegex: %v: fix the image manifest", ErrImage, imageManifest(vm.cfg.Image), err)
		}
		if err := layer("serial", t.Serial, func(ctx context.Context) error {
			line, err := vm.console.WaitFor(ctx, re)
			if err == nil {
				vm.log.Info("serial marker seen", "line", line)
			}
			return err
		}); err != nil {
			return err
		}
	}
	vm.mu.Lock()
	vm.hostKeys = vm.cfg.Image.Manifest.HostKeys
	vm.mu.Unlock()
	if len(r.SSHPorts) > 0 && len(vm.cfg.Image.Manifest.HostKeys) == 0 {
		if err := layer("hostkeys", t.Serial, vm.learnHostKeys); err != nil {
			return err
		}
	}
	if len(r.SSHPorts)+len(r.TCPPorts) > 0 {
		if err := layer("ssh", t.SSH, func(ctx context.Context) error {
			return vm.probePorts(ctx, r.SSHPorts, r.TCPPorts)
		}); err != nil {
			return err
		}
	}
	vm.mu.Lock()
	vm.readyAt = time.Now()
	vm.mu.Unlock()
	writeHealth(vm.plan.Dir.Health(), HealthReady, "")
	return nil
}

// ReadyAt is when Ready last succeeded (zero before).
func (vm *VM) ReadyAt() time.Time {
	vm.mu.Lock()
	defer vm.mu.Unlock()
	return vm.readyAt
}

// waitRunning waits for QMP status running, reacting to RESUME events.
func (vm *VM) waitRunning(ctx context.Context) error {
	vm.mu.Lock()
	mon := vm.mon
	vm.mu.Unlock()
	events, unsub := mon.subscribe()
	defer unsub()
	for {
		st, err := mon.status(ctx)
		if err != nil {
			return err
		}
		if st.Running {
			return nil
		}
		select {
		case <-events:
		case <-ctx.Done():
			return fmt.Errorf("status %q: %w", st.Status, ctx.Err())
		}
	}
}

// hostAddr returns where the forward of guest port p listens.
func (vm *VM) hostAddr(p int) (string, error) {
	for _, f := range vm.plan.Forwards {
		if f.GuestPort == p && f.Proto == "tcp" {
			host := "127.0.0.1"
			if a := vm.cfg.Management.Address; a.IsValid() && !a.IsUnspecified() {
				host = a.String()
			}
			return net.JoinHostPort(host, strconv.Itoa(f.HostPort)), nil
		}
	}
	return "", fmt.Errorf("readiness needs guest port %d but it is not forwarded: add it to --forward", p)
}

func (vm *VM) probePorts(ctx context.Context, sshPorts, tcpPorts []int) error {
	for _, p := range sshPorts {
		addr, err := vm.hostAddr(p)
		if err != nil {
			return err
		}
		if err := retry(ctx, func(ctx context.Context) error {
			t0 := time.Now()
			err := vm.sshHandshake(ctx, addr)
			if err != nil {
				vm.log.Debug("ssh not ready", "addr", addr, "err", err, "attempt", time.Since(t0).Round(time.Millisecond))
			}
			return err
		}); err != nil {
			return fmt.Errorf("ssh %s (guest port %d): %w", addr, p, err)
		}
	}
	for _, p := range tcpPorts {
		addr, err := vm.hostAddr(p)
		if err != nil {
			return err
		}
		if err := retry(ctx, func(ctx context.Context) error {
			c, err := vm.dial(ctx, addr)
			if err == nil {
				c.Close()
			}
			return err
		}); err != nil {
			return fmt.Errorf("tcp %s (guest port %d): %w", addr, p, err)
		}
	}
	return nil
}

// retry runs fn until it succeeds or ctx ends, backing off from 10 ms to
// 50 ms (cenkalti/backoff, no jitter, no overall limit but ctx); it
// returns the last error with ctx's. A permanentError ends it at once.
func retry(ctx context.Context, fn func(context.Context) error) error {
	eb := &backoff.ExponentialBackOff{InitialInterval: 10 * time.Millisecond, Multiplier: 2, MaxInterval: 50 * time.Millisecond}
	var last error
	_, err := backoff.Retry(ctx, func() (struct{}, error) {
		err := fn(ctx)
		var perm permanentError
		if errors.As(err, &perm) {
			return struct{}{}, backoff.Permanent(perm.error)
		}
		last = err
		return struct{}{}, err
	}, backoff.WithBackOff(eb), backoff.WithMaxElapsedTime(0))
	if err != nil && ctx.Err() != nil {
		return fmt.Errorf("%w (last attempt: %v)", ctx.Err(), last)
	}
	return err
}

// dial connects from inside the VM's network namespace.
func (vm *VM) dial(ctx context.Context, addr string) (net.Conn, error) {
	var c net.Conn
	err := vm.env.do(func() error {
		var d net.Dialer
		var err error
		c, err = d.DialContext(ctx, "tcp", addr)
		return err
	})
	return c, err
}

// sshHandshake completes one SSH handshake (and password auth when the
// image names a user), verifying the host key against the manifest's.
func (vm *VM) sshHandshake(ctx context.Context, addr string) error {
	c, err := vm.dial(ctx, addr)
	if err != nil {
		return err
	}
	defer c.Close()
	// Bound each attempt: user networking may hold a connection open
	// while the guest is not answering yet.
	dl := time.Now().Add(10 * time.Second)
	if cd, ok := ctx.Deadline(); ok && cd.Before(dl) {
		dl = cd
	}
	c.SetDeadline(dl)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	m := vm.cfg.Image.Manifest
	vm.mu.Lock()
	pinned := vm.hostKeys
	vm.mu.Unlock()
	cc := &ssh.ClientConfig{
		User:            m.Users.SSHUser,
		HostKeyCallback: HostKeyCallback(pinned),
		Timeout:         5 * time.Second,
	}
	if cc.User == "" {
		cc.User = "probe"
	}
	if m.Users.SSHPassword != "" {
		cc.Auth = []ssh.AuthMethod{ssh.Password(m.Users.SSHPassword)}
	}
	conn, chans, reqs, err := ssh.NewClientConn(c, addr, cc)
	if err != nil {
		if m.Users.SSHPassword == "" && isAuthFailure(err) {
			return nil // no credentials to try: the handshake itself completed
		}
		return err
	}
	ssh.NewClient(conn, chans, reqs).Close()
	return nil
}

func isAuthFailure(err error) bool {
	return err != nil && strings.Contains(err.Error(), "unable to authenticate")
}

// permanentError stops retry: waiting longer cannot fix it.
type permanentError struct{ error }

func (p permanentError) Unwrap() error { return p.error }

// HostKeyCallback accepts exactly the given host keys (by SHA256
// fingerprint) — an image manifest's, or those [PinnedHostKeys] returns —
// and refuses every key when there are none: nothing is taken on trust.
func HostKeyCallback(keys []vmimage.HostKey) ssh.HostKeyCallback {
	return func(host string, _ net.Addr, key ssh.PublicKey) error {
		if len(keys) == 0 {
			return permanentError{fmt.Errorf("%w: refusing host key %s %s of %s", ErrNoHostKeys, key.Type(), ssh.FingerprintSHA256(key), host)}
		}
		fp := ssh.FingerprintSHA256(key)
		for _, k := range keys {
			if k.Fingerprint == fp {
				return nil
			}
		}
		return permanentError{fmt.Errorf("host key %s %s of %s is not one the image manifest lists (wrong guest on this port, or the image was rebuilt: reload its manifest)", key.Type(), fp, host)}
	}
}
