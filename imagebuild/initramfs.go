package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"debug/elf"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/endpointkit/endpointkit/imagebuild/agent"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// Names of the artefacts in an image directory.
const (
	KernelFile    = "vmlinux"
	InitramfsFile = "initramfs.cpio"
	InitrdFile    = "initrd.cpio"
	DiskFile      = "disk.qcow2"
	SeedFile      = "seed.iso"
)

// DefaultBusybox is the static busybox the initramfs is made of (Debian
// package busybox-static).
const DefaultBusybox = "/bin/busybox"

// Kernel command lines. The launcher appends endpointkit.hostname=NAME.
const (
	// initramfsCmdline keeps the serial console quiet (every byte costs
	// time under TCG) and makes a kernel panic power the VM off. It skips
	// what costs the most boot time under TCG (docs/performance.md):
	// the crypto self-tests at late init (cryptomgr.notests, 0.25 s) and
	// PCI interrupt routing through ACPI's AML link devices (acpi=noirq,
	// 0.1–0.3 s in virtio_pci's probe; the BIOS routing table serves).
	// acpi=noirq rather than pci=noacpi: the latter also turns off ACPI
	// PCI hot-plug (acpiphp), and NICs added to a running endpoint
	// (`lesson link add`) are hot-plugged through it.
	initramfsCmdline = "console=ttyS0 quiet loglevel=3 panic=-1 8250.nr_uarts=1 cryptomgr.notests acpi=noirq"
	debianCmdline    = "console=ttyS0 root=/dev/vda rw rootfstype=ext4 net.ifnames=0 panic=-1 quiet loglevel=3"
)

const profile = `export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export PS1='\u@\h:\w\$ '
`

// hostKey is an SSH host key made at build time.
type hostKey struct {
	private []byte // OpenSSH PEM
	public  ssh.PublicKey
}

func newHostKey() (*hostKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "endpointkit host key")
	if err != nil {
		return nil, err
	}
	sp, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	return &hostKey{private: pem.EncodeToMemory(blk), public: sp}, nil
}

func (k *hostKey) manifest() vmimage.HostKey {
	return vmimage.HostKey{Type: k.public.Type(), Fingerprint: ssh.FingerprintSHA256(k.public),
		PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k.public)))}
}

// busyboxApplets lists the applet paths of a static busybox (relative, as
// `busybox --list-full` prints them), without busybox itself and the names
// the agent provides.
func busyboxApplets(ctx context.Context, bb string) ([]string, error) {
	ef, err := elf.Open(bb)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: busybox %s: %w (install busybox-static)", bb, err)
	}
	for _, p := range ef.Progs {
		if p.Type == elf.PT_INTERP {
			ef.Close()
			return nil, fmt.Errorf("imagebuild: %s is dynamically linked; the initramfs needs a static busybox (install busybox-static)", bb)
		}
	}
	ef.Close()
	out, err := exec.CommandContext(ctx, bb, "--list-full").Output()
	if err != nil {
		return nil, fmt.Errorf("imagebuild: %s --list-full: %w", bb, err)
	}
	skip := map[string]bool{"busybox": true, "init": true, "linuxrc": true, "sudo": true}
	var applets []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		p := strings.TrimSpace(sc.Text())
		if p != "" && !skip[filepath.Base(p)] {
			applets = append(applets, p)
		}
	}
	return applets, nil
}

// initramfsInputs are what an initramfs is made of, resolved.
type initramfsInputs struct {
	kernel       *kernel
	modules      []string // relative to the module dir, load order
	shareModules []string // loaded only with a 9p device (not in modules)
	agent        string   // agent binary
	busybox      string
	applets      []string
}

// initramfsPlan lays out the tiny endpoint's file system.
func initramfsPlan(r *Recipe, in initramfsInputs, key *hostKey) (fsPlan, error) {
	acc := newAccounts(r.Users)
	p := fsPlan{
		dirEntry("/bin", 0o755, 0, 0), dirEntry("/sbin", 0o755, 0, 0),
		dirEntry("/usr/bin", 0o755, 0, 0), dirEntry("/usr/sbin", 0o755, 0, 0),
		dirEntry("/proc", 0o555, 0, 0), dirEntry("/sys", 0o555, 0, 0),
		dirEntry("/dev", 0o755, 0, 0), dirEntry("/run", 0o755, 0, 0),
		dirEntry("/root", 0o700, 0, 0), dirEntry("/tmp", 0o1777|fs.ModeSticky, 0, 0),
		dirEntry("/var/log", 0o755, 0, 0), dirEntry("/var/tmp", 0o1777|fs.ModeSticky, 0, 0),
		dirEntry("/mnt", 0o755, 0, 0), dirEntry(DefaultSharePath, 0o755, 0, 0),
		{Path: "/var/run", Mode: fs.ModeSymlink | 0o777, Link: "../run"},
		{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		{Path: "/dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Major: 1, Minor: 3},
		// The agent is PID 1 and, set-uid root under the name sudo, sudo;
		// under any other name it drops the set-uid privilege first.
		{Path: "/init", Mode: 0o755 | fs.ModeSetuid, Src: in.agent},
		{Path: "/usr/bin/sudo", Mode: fs.ModeSymlink | 0o777, Link: "/init"},
		{Path: "/bin/busybox", Mode: 0o755, Src: in.busybox},
		fileEntry("/etc/passwd", 0o644, acc.passwd()),
		fileEntry("/etc/group", 0o644, acc.group()),
		fileEntry("/etc/shadow", 0o640, acc.shadow()),
		fileEntry("/etc/hostname", 0o644, []byte(r.Slug+"\n")),
		fileEntry("/etc/shells", 0o644, []byte("/bin/sh\n/bin/ash\n")),
		fileEntry("/etc/profile", 0o644, []byte(profile)),
		fileEntry("/etc/resolv.conf", 0o644, nil),
		fileEntry("/etc/ssh/ssh_host_ed25519_key", 0o600, key.private),
		fileEntry("/etc/ssh/ssh_host_ed25519_key.pub", 0o644, ssh.MarshalAuthorizedKey(key.public)),
	}
	for _, a := range in.applets {
		p = append(p, fsEntry{Path: "/" + a, Mode: fs.ModeSymlink | 0o777, Link: "/bin/busybox"})
	}
	addModules := func(mods []string) []string {
		var paths []string
		for _, m := range mods {
			dst := filepath.Join("/lib/modules", in.kernel.Version, m)
			p = append(p, fsEntry{Path: dst, Mode: 0o644, Src: in.kernel.modulePath(m)})
			paths = append(paths, dst)
		}
		return paths
	}
	cfg := agent.Config{
		Mode:         agent.ModeEndpoint,
		Modules:      addModules(in.modules),
		ShareModules: addModules(in.shareModules),
		Hostname:     r.Slug,
		Share9PTag:   DefaultShareTag,
		Share9PPath:  DefaultSharePath,
		// Lets non-root users ping without a set-uid ping (ICMP sockets).
		Sysctls: map[string]string{"net.ipv4.ping_group_range": "0 2147483647"},
		SSH:     agent.SSHConfig{Port: r.APIs.SSH.Port, HostKeys: []string{"/etc/ssh/ssh_host_ed25519_key"}},
	}
	nics := r.layout()
	if *r.DHCP {
		cfg.DHCP = []string{nics.ManagementNIC().Name}
	}
	cfg.NICNames = agentNICNames(nics)
	for _, u := range acc.users {
		au := agent.User{Name: u.Name}
		if u.Password != "" {
			au.PasswordHash = agent.HashPassword(u.Password)
		}
		cfg.SSH.Users = append(cfg.SSH.Users, au)
		p = append(p, dirEntry(u.Home, 0o755, u.UID, u.GID))
		if len(u.AuthorizedKeys) > 0 {
			p = append(p, dirEntry(u.Home+"/.ssh", 0o700, u.UID, u.GID),
				fsEntry{Path: u.Home + "/.ssh/authorized_keys", Mode: 0o600, UID: u.UID, GID: u.GID,
					Data: []byte(strings.Join(u.AuthorizedKeys, "\n") + "\n")})
		}
	}
	raw, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return nil, err
	}
	p = append(p, fileEntry(agent.ConfigFile, 0o644, raw))
	for _, f := range r.Files {
		uid, gid, err := acc.owner(f.Owner)
		if err != nil {
			return nil, err
		}
		fp, err := copyTree(f.Src, f.Dst, parseMode(f.Mode), uid, gid)
		if err != nil {
			return nil, err
		}
		p = append(p, fp...)
	}
	return p, nil
}

// owner resolves "user[:group]" against the image's accounts.
func (a *accounts) owner(s string) (int, int, error) {
	if s == "" {
		return 0, 0, nil
	}
	un, gn, _ := strings.Cut(s, ":")
	uid, gid := -1, -1
	if un == "root" {
		uid, gid = 0, 0
	}
	for _, u := range a.users {
		if u.Name == un {
			uid, gid = u.UID, u.GID
		}
	}
	if uid < 0 {
		return 0, 0, fmt.Errorf("imagebuild: owner %q: no user %s in the recipe", s, un)
	}
	if gn != "" {
		g, ok := a.groups[gn]
		if !ok {
			return 0, 0, fmt.Errorf("imagebuild: owner %q: no group %s in the recipe", s, gn)
		}
		gid = g
	}
	return uid, gid, nil
}

func parseMode(s string) fs.FileMode {
	var m uint32
	fmt.Sscanf(s, "%o", &m)
	return fs.FileMode(m)
}

// buildInitramfs writes vmlinux and initramfs.cpio into dir and returns
// the manifest (without artefact sums).
func (b *Builder) buildInitramfs(ctx context.Context, r *Recipe, in initramfsInputs, dir string) (*vmimage.Manifest, error) {
	key, err := newHostKey()
	if err != nil {
		return nil, err
	}
	plan, err := initramfsPlan(r, in, key)
	if err != nil {
		return nil, err
	}
	b.progress.Step("pack initramfs")
	f, err := os.Create(filepath.Join(dir, InitramfsFile))
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	err = plan.writeCPIO(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("imagebuild: write initramfs: %w", err)
	}
	if err := linkOrCopy(in.kernel.vmlinux(), filepath.Join(dir, KernelFile)); err != nil {
		return nil, fmt.Errorf("imagebuild: kernel: %w", err)
	}
	m := baseManifest(r)
	m.Kernel, m.KernelFormat, m.Initrd = KernelFile, vmimage.KernelPVH, InitramfsFile
	m.KernelVersion = in.kernel.Version
	m.Cmdline = joinCmdline(initramfsCmdline, r.Kernel.Cmdline)
	m.Share9P = true
	m.HostKeys = []vmimage.HostKey{key.manifest()}
	if m.QEMU.MemoryMiB == 0 {
		m.QEMU.MemoryMiB = 256
	}
	if m.Readiness.BootSeconds == 0 {
		m.Readiness.BootSeconds = 3
	}
	return m, nil
}

func joinCmdline(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return strings.Join(out, " ")
}
