package imagetest

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// BootOptions tune [Boot]. The zero value boots with the image's hints.
type BootOptions struct {
	// Hostname is passed as endpointkit.hostname=; default a random name.
	Hostname string
	// Share is a host directory offered as the 9p share tagged "antidote".
	Share string
	// DataNICs adds that many isolated NICs (eth1, eth2, …): user-mode
	// networks 10.(10+N).0.0/24 with no outside access, whose gateway
	// 10.(10+N).0.2 answers ping.
	DataNICs int
	// ExtraForwards are more guest TCP ports forwarded to random local
	// ports (see VM.Forwarded).
	ExtraForwards []int
	// Timeout bounds the wait for the serial marker and SSH; default 5 min (a loaded
	// 2-CPU machine has taken 3.5 min to boot the Debian image).
	Timeout time.Duration
	// Drives are extra raw disk images attached read-only (virtio), after
	// the image's own disk.
	Drives []string
	// Kernel overrides the image's kernel file (for comparisons, e.g. a
	// compressed bzImage against the PVH vmlinux); Cmdline its command line
	// and CPU its CPU hint (for comparisons with other settings).
	Kernel, Cmdline, CPU string
	// Debug adds endpointkit.debug to the kernel command line: the agent
	// prints its boot steps with the kernel's uptime (see VM.Steps).
	Debug bool
	// NoIdentity boots an image that takes a per-instance identity
	// (Manifest.Identity) without one, and NoWait returns as soon as QEMU
	// runs, without waiting for the marker or SSH (see VM.WaitConsole).
	NoIdentity, NoWait bool
}

// VM is a booted test guest.
type VM struct {
	Image *vmimage.Image
	// SSHAddr is the host address forwarded to the guest's SSH port.
	SSHAddr string
	// Hostname is the guest's name.
	Hostname string
	// ReadyAfter is the time from starting QEMU to the serial marker;
	// SSHAfter to the first successful SSH login.
	ReadyAfter, SSHAfter time.Duration
	// HostKeys are the keys SSH logins pin: the manifest's, or those of
	// the instance's identity when the image takes one from fw_cfg.
	HostKeys []vmimage.HostKey
	// Identity is the instance's identity (nil unless the image takes
	// one).
	Identity *vmimage.Identity

	forwards map[int]string
	cmd      *exec.Cmd
	qmp      string
	done     chan struct{}
	waitErr  error
	mu       sync.Mutex
	console  bytes.Buffer
}

// Console returns the serial console output so far.
func (v *VM) Console() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.String()
}

func (v *VM) Write(p []byte) (int, error) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.console.Write(p)
}

// stepRe matches a boot step the agent prints under endpointkit.debug.
var stepRe = regexp.MustCompile(`(?m)^endpointkit: \[([0-9.]+)\] (.+?)\r?$`)

// Steps returns the agent's boot steps printed so far (BootOptions.Debug):
// each step's first time, in seconds of the guest kernel's uptime (for
// example "init started", "dhcp lease", "ready").
func (v *VM) Steps() map[string]float64 {
	steps := map[string]float64{}
	for _, m := range stepRe.FindAllStringSubmatch(v.Console(), -1) {
		if _, seen := steps[m[2]]; !seen {
			steps[m[2]], _ = strconv.ParseFloat(m[1], 64)
		}
	}
	return steps
}

// freePort returns a TCP port that was free a moment ago.
func freePort(tb testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Forwarded returns the local address forwarded to a guest port given in
// BootOptions.ExtraForwards (or the SSH port).
func (v *VM) Forwarded(guestPort int) string { return v.forwards[guestPort] }

// Args returns the QEMU command line that boots im with user-mode
// networking forwarding local ports to guest ports (forwards: guest port
// to local address).
func Args(im *vmimage.Image, opts BootOptions, forwards map[int]string, qmpPath string) []string {
	m := im.Manifest
	machine := m.QEMU.Machine
	if machine == "" {
		machine = "pc"
	}
	mem := m.QEMU.MemoryMiB
	if mem == 0 {
		mem = 512
	}
	cpus := max(m.QEMU.CPUs, 1)
	nic := m.QEMU.NICModel
	if nic == "" {
		nic = "virtio-net-pci"
	}
	args := []string{"-machine", machine, "-accel", "tcg", "-m", strconv.Itoa(mem), "-smp", strconv.Itoa(cpus),
		"-nodefaults", "-no-user-config", "-display", "none", "-serial", "stdio",
		"-qmp", "unix:" + qmpPath + ",server=on,wait=off", "-no-reboot"}
	if cpu := cmp.Or(opts.CPU, m.QEMU.CPU); cpu != "" {
		args = append(args, "-cpu", cpu)
	}
	if m.Kernel != "" {
		kernel := im.Path(m.Kernel)
		if opts.Kernel != "" {
			kernel = opts.Kernel
		}
		cmdline := cmp.Or(opts.Cmdline, m.Cmdline) + " endpointkit.hostname=" + opts.Hostname
		if opts.Debug {
			cmdline += " endpointkit.debug"
		}
		args = append(args, "-kernel", kernel, "-append", cmdline)
		if m.Initrd != "" {
			args = append(args, "-initrd", im.Path(m.Initrd))
		}
	}
	// Devices sit where the product launcher puts them: the NICs where the
	// image's NIC layout says (the guest names them by address), the
	// drives and the share from vmimage.AuxSlot up.
	aux := vmimage.AuxSlot
	drive := func(spec string) {
		id := fmt.Sprintf("d%d", aux)
		args = append(args, "-drive", spec+",if=none,id="+id, "-device", fmt.Sprintf("virtio-blk-pci,drive=%s,addr=0x%x", id, aux))
		aux++
	}
	if m.Disk != "" {
		bus := m.QEMU.DiskBus
		switch bus {
		case "", "virtio":
			drive("file=" + im.Path(m.Disk) + ",format=" + m.DiskFormat + ",snapshot=on")
		default:
			args = append(args, "-drive", "file="+im.Path(m.Disk)+",format="+m.DiskFormat+",if="+bus+",snapshot=on")
		}
	}
	if m.Seed != "" {
		drive("file=" + im.Path(m.Seed) + ",format=raw,readonly=on")
	}
	for _, d := range opts.Drives {
		drive("file=" + d + ",format=raw,readonly=on")
	}
	nics := m.Layout()
	user := "user,id=n0"
	for guest, local := range forwards {
		user += fmt.Sprintf(",hostfwd=tcp:%s-:%d", local, guest)
	}
	args = append(args, "-netdev", user, "-device", nic+",netdev=n0,"+nics.ManagementNIC().QEMU())
	for i := 1; i <= opts.DataNICs; i++ {
		at, err := nics.DataNIC(i)
		if err != nil {
			break // Boot checks DataNICs against the layout
		}
		args = append(args, "-netdev", fmt.Sprintf("user,id=n%d,restrict=on,net=10.%d.0.0/24", i, 10+i), "-device", fmt.Sprintf("%s,netdev=n%d,%s", nic, i, at.QEMU()))
	}
	if opts.Share != "" {
		args = append(args, "-fsdev", "local,path="+opts.Share+",security_model=none,id=share0",
			"-device", fmt.Sprintf("virtio-9p-pci,fsdev=share0,mount_tag=antidote,addr=0x%x", aux))
	}
	return args
}

// Boot starts im under QEMU (TCG), waits for the manifest's serial marker
// and an SSH login, and stops the VM when the test ends. It skips without
// QEMU.
func Boot(tb testing.TB, im *vmimage.Image, opts BootOptions) *VM {
	tb.Helper()
	ektest.RequireQEMU(tb)
	if opts.Hostname == "" {
		opts.Hostname = ektest.Name("t")
	}
	if opts.Timeout == 0 {
		opts.Timeout = 5 * time.Minute
	}
	dir, err := os.MkdirTemp("", "ekboot")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { os.RemoveAll(dir) })
	guestSSH := im.Manifest.APIs.SSH
	if guestSSH == 0 {
		guestSSH = 22
	}
	fwd := map[int]string{}
	for _, p := range append([]int{guestSSH}, opts.ExtraForwards...) {
		fwd[p] = fmt.Sprintf("127.0.0.1:%d", freePort(tb))
	}
	v := &VM{Image: im, SSHAddr: fwd[guestSSH], Hostname: opts.Hostname, forwards: fwd,
		qmp: filepath.Join(dir, "qmp.sock"), done: make(chan struct{}), HostKeys: im.Manifest.HostKeys}
	args := Args(im, opts, fwd, v.qmp)
	if im.Manifest.Identity == vmimage.IdentityFWCfg && !opts.NoIdentity {
		var err error
		if v.Identity, err = vmimage.NewIdentity(opts.Hostname); err != nil {
			tb.Fatal(err)
		}
		file := filepath.Join(dir, "identity")
		if err := os.WriteFile(file, v.Identity.FWCfg(), 0o600); err != nil {
			tb.Fatal(err)
		}
		args = append(args, "-fw_cfg", "name="+vmimage.IdentityFWCfgName+",file="+file)
		v.HostKeys = v.Identity.HostKeys()
	}
	v.cmd = exec.Command("qemu-system-x86_64", args...)
	v.cmd.Stdout = v
	v.cmd.Stderr = v
	start := time.Now()
	if err := v.cmd.Start(); err != nil {
		tb.Fatalf("imagetest: start qemu: %v", err)
	}
	go func() {
		v.waitErr = v.cmd.Wait()
		close(v.done)
	}()
	tb.Cleanup(func() {
		select {
		case <-v.done:
		default:
			v.cmd.Process.Kill()
			<-v.done
		}
	})
	if opts.NoWait {
		return v
	}
	ctx, cancel := context.WithTimeout(context.Background(), opts.Timeout)
	defer cancel()
	if re := im.Manifest.Readiness.SerialRegex; re != "" {
		if err := v.WaitConsole(ctx, regexp.MustCompile(re)); err != nil {
			tb.Fatalf("imagetest: %s: %v\nconsole:\n%s", im.Manifest.Slug, err, tail(v.Console(), 40))
		}
		v.ReadyAfter = time.Since(start)
	}
	c, err := v.dialSSH(ctx)
	if err != nil {
		tb.Fatalf("imagetest: %s: ssh: %v\nconsole:\n%s", im.Manifest.Slug, err, tail(v.Console(), 40))
	}
	c.Close()
	v.SSHAfter = time.Since(start)
	tb.Logf("imagetest: %s booted: serial marker after %s, ssh after %s", im.Manifest.Slug,
		v.ReadyAfter.Round(time.Millisecond), v.SSHAfter.Round(time.Millisecond))
	return v
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// WaitConsole waits until the console matches re, QEMU exits or ctx ends.
func (v *VM) WaitConsole(ctx context.Context, re *regexp.Regexp) error {
	for {
		if re.MatchString(v.Console()) {
			return nil
		}
		select {
		case <-v.done:
			return fmt.Errorf("qemu exited (%v) before the console matched %q", v.waitErr, re)
		case <-ctx.Done():
			return fmt.Errorf("console did not match %q: %w", re, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// ClientConfig is an SSH client configuration for the image's sshUser
// that accepts only the host keys recorded in the manifest.
func ClientConfig(im *vmimage.Image) *ssh.ClientConfig {
	return clientConfig(im, im.Manifest.HostKeys)
}

// ClientConfig is an SSH client configuration for the image's sshUser
// that accepts only this VM's host keys (VM.HostKeys).
func (v *VM) ClientConfig() *ssh.ClientConfig { return clientConfig(v.Image, v.HostKeys) }

func clientConfig(im *vmimage.Image, pinned []vmimage.HostKey) *ssh.ClientConfig {
	keys := map[string]bool{}
	for _, k := range pinned {
		keys[k.Fingerprint] = true
	}
	return &ssh.ClientConfig{
		User: im.Manifest.Users.SSHUser,
		Auth: []ssh.AuthMethod{ssh.Password(im.Manifest.Users.SSHPassword)},
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			if !keys[ssh.FingerprintSHA256(key)] {
				return fmt.Errorf("host key %s is not pinned (the image manifest's or the instance identity's)", ssh.FingerprintSHA256(key))
			}
			return nil
		},
		Timeout: 10 * time.Second,
	}
}

// dialSSH retries until a real SSH login succeeds (user-mode networking
// accepts TCP before the guest listens).
func (v *VM) dialSSH(ctx context.Context) (*ssh.Client, error) {
	cfg := v.ClientConfig()
	var last error
	for {
		c, err := ssh.Dial("tcp", v.SSHAddr, cfg)
		if err == nil {
			return c, nil
		}
		last = err
		select {
		case <-v.done:
			return nil, fmt.Errorf("qemu exited (%v); last ssh error: %v", v.waitErr, last)
		case <-ctx.Done():
			return nil, fmt.Errorf("%w; last ssh error: %v", ctx.Err(), last)
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// SSH logs in as the image's sshUser; the client is closed when the test
// ends.
func (v *VM) SSH(tb testing.TB) *ssh.Client {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, err := v.dialSSH(ctx)
	if err != nil {
		tb.Fatalf("imagetest: ssh %s: %v", v.SSHAddr, err)
	}
	tb.Cleanup(func() { c.Close() })
	return c
}

// Run runs cmd over a new SSH session and returns stdout, stderr and the
// error (an *ssh.ExitError for a non-zero exit status).
func Run(c *ssh.Client, cmd string) (string, string, error) {
	s, err := c.NewSession()
	if err != nil {
		return "", "", err
	}
	defer s.Close()
	var out, errb bytes.Buffer
	s.Stdout, s.Stderr = &out, &errb
	err = s.Run(cmd)
	return out.String(), errb.String(), err
}

// PowerDown presses the ACPI power button over QMP (system_powerdown) and
// waits for QEMU to exit.
func (v *VM) PowerDown(ctx context.Context) error {
	conn, err := net.Dial("unix", v.qmp)
	if err != nil {
		return err
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	if _, err := rd.ReadBytes('\n'); err != nil { // greeting
		return err
	}
	for _, c := range []string{"qmp_capabilities", "system_powerdown"} {
		raw, _ := json.Marshal(map[string]string{"execute": c})
		if _, err := conn.Write(append(raw, '\n')); err != nil {
			return err
		}
	}
	select {
	case <-v.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("guest did not power off: %w", ctx.Err())
	}
}

// MustPowerDown presses the ACPI power button and fails the test, with the
// console, unless the guest powers off within timeout and QEMU exits
// cleanly.
func (v *VM) MustPowerDown(tb testing.TB, timeout time.Duration) {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	if err := v.PowerDown(ctx); err != nil {
		tb.Fatalf("imagetest: %s: %v\nconsole:\n%s", v.Image.Manifest.Slug, err, tail(v.Console(), 40))
	}
	if _, err := v.Exited(); err != nil {
		tb.Errorf("imagetest: %s: qemu exit: %v", v.Image.Manifest.Slug, err)
	}
}

// Exited reports whether QEMU has exited, and how.
func (v *VM) Exited() (bool, error) {
	select {
	case <-v.done:
		return true, v.waitErr
	default:
		return false, nil
	}
}

// MustRun runs cmd over SSH and returns its stdout without surrounding
// space; any failure ends the test with both outputs.
func MustRun(tb testing.TB, c *ssh.Client, cmd string) string {
	tb.Helper()
	out, errOut, err := Run(c, cmd)
	if err != nil {
		tb.Fatalf("%q: %v\nstdout: %s\nstderr: %s", cmd, err, out, errOut)
	}
	return strings.TrimSpace(out)
}
