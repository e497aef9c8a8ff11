package qemulaunch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// TestReport is what [TestImage] measured.
type TestReport struct {
	Accel    Accel
	Ready    time.Duration // Start to Ready
	Login    string        // what `id -un` printed over SSH
	Tests    []SelfTestResult
	Stop     time.Duration
	Exit     Exit
	Forwards []Forward
}

// TestImage boots im on the loopback address (any free host ports, in the
// caller's namespace, no data NICs), waits until it is ready, logs in over
// SSH as the image's user with its password and runs `id -un`, runs the
// image's self-tests ([RunSelfTests]), then stops the VM gracefully. It
// fails unless every step works and the guest powers off by itself. ctx bounds the whole test; log may be nil.
func TestImage(ctx context.Context, im *vmimage.Image, accel Accel, log *slog.Logger) (*TestReport, error) {
	m := im.Manifest
	if m.Users.SSHUser == "" {
		return nil, fmt.Errorf("%w: %s: users.sshUser is empty; nothing to log in as", ErrImage, imageManifest(im))
	}
	sshPort := m.APIs.SSH
	if sshPort == 0 && len(m.Readiness.SSHPorts) > 0 {
		sshPort = m.Readiness.SSHPorts[0]
	}
	if sshPort == 0 {
		sshPort = 22
	}
	fwd := []Forward{{GuestPort: sshPort, HostPort: AutoPort}}
	for _, p := range append(m.Readiness.SSHPorts, m.Readiness.TCPPorts...) {
		if p != sshPort {
			fwd = append(fwd, Forward{GuestPort: p, HostPort: AutoPort})
		}
	}
	state, err := os.MkdirTemp("", "ekimagetest")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(state)
	name := m.Slug
	if !isDNSLabel(name) {
		name = "imagetest"
	}
	t0 := time.Now()
	vm, err := Start(ctx, Config{Name: name, Image: im, Accel: accel, StateDir: state,
		Management: Management{Address: netip.MustParseAddr("127.0.0.1")}, Forwards: fwd, Logger: log})
	if err != nil {
		return nil, err
	}
	defer vm.Kill()
	m = vm.cfg.Image.Manifest // with the instance's own host keys, if it has an identity
	rep := &TestReport{Accel: vm.Plan().Accel, Forwards: vm.Forwards()}
	if err := vm.Ready(ctx); err != nil {
		return rep, fmt.Errorf("%w\nconsole tail:\n%s", err, vm.Console().Tail(2000))
	}
	rep.Ready = time.Since(t0)
	vm.mu.Lock()
	m.HostKeys = vm.hostKeys // the manifest's, or those learned from the console
	vm.mu.Unlock()
	addr, _ := vm.hostAddr(sshPort)
	if rep.Login, err = sshOutput(ctx, addr, m, "id -un"); err != nil {
		return rep, fmt.Errorf("ssh as %s to %s: %w", m.Users.SSHUser, addr, err)
	}
	if rep.Login != m.Users.SSHUser {
		return rep, fmt.Errorf("ssh as %s: id -un says %q", m.Users.SSHUser, rep.Login)
	}
	if rep.Tests, err = RunSelfTests(ctx, addr, m); err != nil {
		return rep, err
	}
	t1 := time.Now()
	if err := vm.Stop(ctx); err != nil {
		return rep, err
	}
	rep.Stop = time.Since(t1)
	rep.Exit, err = vm.Wait(ctx)
	if err == nil && rep.Exit.Reason != ExitStopped {
		err = fmt.Errorf("guest did not power off on the ACPI button: %s", rep.Exit)
	}
	return rep, err
}

// sshOutput logs in with the manifest's credentials and host keys and runs
// cmd, returning its trimmed stdout.
func sshOutput(ctx context.Context, addr string, m vmimage.Manifest, cmd string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	if dl, ok := ctx.Deadline(); ok {
		c.SetDeadline(dl)
	}
	cc, chans, reqs, err := ssh.NewClientConn(c, addr, &ssh.ClientConfig{User: m.Users.SSHUser,
		Auth: []ssh.AuthMethod{ssh.Password(m.Users.SSHPassword)}, HostKeyCallback: HostKeyCallback(m.HostKeys)})
	if err != nil {
		c.Close()
		return "", err
	}
	client := ssh.NewClient(cc, chans, reqs)
	defer client.Close()
	s, err := client.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	out, err := s.Output(cmd)
	if err != nil {
		var ee *ssh.ExitError
		if errors.As(err, &ee) {
			return "", fmt.Errorf("%q exited %d", cmd, ee.ExitStatus())
		}
		return "", err
	}
	return strings.TrimSpace(string(out)), nil
}

func (r *TestReport) String() string {
	ports := make([]string, len(r.Forwards))
	for i, f := range r.Forwards {
		ports[i] = strconv.Itoa(f.GuestPort)
	}
	tests := ""
	if len(r.Tests) > 0 {
		tests = fmt.Sprintf(", %d self-test(s) passed", len(r.Tests))
	}
	return fmt.Sprintf("ready in %.2fs (%s), ssh login as %s ok%s, stopped in %.2fs (%s); guest ports %s",
		r.Ready.Seconds(), r.Accel, r.Login, tests, r.Stop.Seconds(), r.Exit.Reason, strings.Join(ports, ","))
}
