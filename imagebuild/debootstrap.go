package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"github.com/endpointkit/endpointkit/imagebuild/agent"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
	"golang.org/x/sys/unix"
)

// basePackages are installed in every debootstrap image on top of minbase.
// udev avoids a 90 s wait on serial-getty; dbus lets systemd-logind handle
// the ACPI power button (QMP system_powerdown).
func basePackages() []string {
	return []string{
		"dbus", "ifupdown", "iproute2", "isc-dhcp-client", "kmod", "netbase",
		"openssh-server", "procps", "python3", "sudo", "systemd-sysv", "udev",
	}
}

// stage1Modules are what the stage-one initrd loads: the root disk's, and
// the defaults, so eth0, the 9p share and the power button exist before
// systemd starts (ifupdown's "auto eth0" needs the device at boot).
func stage1Modules() []string { return append([]string{"crc32c_generic", "ext4"}, defaultModules()...) }

// rootModuleDirs are the parts of the kernel's module tree copied into the
// root file system (modprobe of network, file system and virtio modules
// works; graphics, sound, wireless and the like are left out).
func rootModuleDirs() []string {
	return []string{
		"kernel/arch", "kernel/crypto", "kernel/lib", "kernel/fs", "kernel/net",
		"kernel/drivers/virtio", "kernel/drivers/block", "kernel/drivers/char", "kernel/drivers/input",
		"kernel/drivers/acpi", "kernel/drivers/scsi", "kernel/drivers/ata",
		"kernel/drivers/net/ethernet/intel", "kernel/drivers/net/phy",
	}
}

type debootstrapInputs struct {
	kernel   *kernel
	agent    string
	agentSum string
	modules  []string // stage-one initrd modules, load order
}

func (b *Builder) debootstrapInputs(ctx context.Context, r *Recipe, k *kernel) (debootstrapInputs, error) {
	in := debootstrapInputs{kernel: k}
	if b.euid() != 0 {
		return in, fmt.Errorf("imagebuild: %s: kind debootstrap %w (debootstrap, chroot and file owners): run as root", r.Path, ErrNeedRoot)
	}
	for _, tool := range []string{"debootstrap", "mkfs.ext4", "qemu-img", "chroot"} {
		if _, err := exec.LookPath(tool); err != nil {
			return in, fmt.Errorf("imagebuild: kind debootstrap needs %s: %w (run `make deps`)", tool, ErrMissingTool)
		}
	}
	var err error
	if in.modules, err = k.resolveModules(stage1Modules()); err != nil {
		return in, err
	}
	if in.agent, err = b.agentBinary(ctx, r); err != nil {
		return in, err
	}
	in.agentSum, err = vmimage.FileSHA256(in.agent)
	return in, err
}

func (b *Builder) euid() int {
	if b.euidFunc != nil {
		return b.euidFunc()
	}
	return os.Geteuid()
}

// buildDebootstrap makes a Debian root file system from nothing, configures
// it, and writes vmlinux, initrd.cpio (stage one: mount /dev/vda, switch
// root) and disk.qcow2 into dir.
func (b *Builder) buildDebootstrap(ctx context.Context, r *Recipe, in debootstrapInputs, dir string) (*vmimage.Manifest, error) {
	work, err := os.MkdirTemp(filepath.Join(b.opts.CacheDir), ".work-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := b.debootstrap(ctx, r, root); err != nil {
		return nil, err
	}
	keys, err := b.configureRoot(ctx, r, in, root)
	if err != nil {
		return nil, err
	}
	b.progress.Step("make ext4 file system and qcow2 disk")
	if err := makeDisk(ctx, root, work, filepath.Join(dir, DiskFile), r.DiskSizeMiB); err != nil {
		return nil, err
	}
	b.progress.Step("pack stage-one initrd")
	if err := writeStage1Initrd(in, filepath.Join(dir, InitrdFile)); err != nil {
		return nil, err
	}
	if err := linkOrCopy(in.kernel.vmlinux(), filepath.Join(dir, KernelFile)); err != nil {
		return nil, err
	}
	m := baseManifest(r)
	m.Kernel, m.KernelFormat, m.Initrd, m.KernelVersion = KernelFile, vmimage.KernelPVH, InitrdFile, in.kernel.Version
	m.Disk, m.DiskFormat = DiskFile, "qcow2"
	m.Cmdline = joinCmdline(debianCmdline+" "+strings.Join(DebianBootTrim(), " "), r.Kernel.Cmdline)
	m.Share9P = true
	m.HostKeys = keys
	if m.QEMU.MemoryMiB == 0 {
		m.QEMU.MemoryMiB = 512
	}
	if m.QEMU.DiskBus == "" {
		m.QEMU.DiskBus = "virtio"
	}
	if m.Readiness.BootSeconds == 0 {
		m.Readiness.BootSeconds = 10
	}
	return m, nil
}

// debootstrap runs debootstrap (minbase + base and recipe packages),
// keeping downloaded packages in the cache.
func (b *Builder) debootstrap(ctx context.Context, r *Recipe, root string) error {
	pkgs := append(append(basePackages(), r.Packages...), r.apis().Packages...)
	sort.Strings(pkgs)
	cache := filepath.Join(b.opts.CacheDir, "debootstrap", r.Suite)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return err
	}
	b.progress.Step(fmt.Sprintf("debootstrap %s from %s (%d packages + minbase)", r.Suite, r.Mirror, len(pkgs)))
	lines := b.progress.Lines("debootstrap").(*lineWriter)
	cmd := exec.CommandContext(ctx, "debootstrap", "--variant=minbase", "--merged-usr",
		"--include="+strings.Join(pkgs, ","), "--cache-dir="+cache, r.Suite, root, r.Mirror)
	cmd.Stdout, cmd.Stderr = lines, lines
	cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive", "LC_ALL=C")
	err := cmd.Run()
	lines.Close()
	if err != nil {
		return debootstrapError(r, err, lines.Tail())
	}
	return nil
}

// debootstrapError explains a failed debootstrap: the mirror, and the
// package when one is to blame.
func debootstrapError(r *Recipe, err error, tail string) error {
	pkgErr := func(pat string) string {
		if i := strings.Index(tail, pat); i >= 0 {
			if f := strings.Fields(tail[i+len(pat):]); len(f) > 0 {
				return strings.Trim(f[0], "|")
			}
		}
		return ""
	}
	switch {
	case strings.Contains(tail, "Failed getting release file") || strings.Contains(tail, "Invalid Release file"):
		return fmt.Errorf("imagebuild: %s: mirror %s unreachable or not a Debian mirror (fetching dists/%s/Release failed): %v: %s (set mirror: in the recipe)",
			r.Path, r.Mirror, r.Suite, err, tail)
	case pkgErr("Couldn't download package ") != "":
		return fmt.Errorf("imagebuild: %s: could not download package %s from mirror %s: %v: %s", r.Path, pkgErr("Couldn't download package "), r.Mirror, err, tail)
	case pkgErr("Couldn't find these debs: ") != "":
		return fmt.Errorf("imagebuild: %s: package %s not found on mirror %s for %s (check packages:): %v: %s", r.Path, pkgErr("Couldn't find these debs: "), r.Mirror, r.Suite, err, tail)
	}
	return fmt.Errorf("imagebuild: %s: debootstrap %s from mirror %s (packages %s): %v: %s", r.Path, r.Suite, r.Mirror, strings.Join(r.Packages, ","), err, tail)
}

const (
	sshdConfig = `# endpointkit: password logins for the lesson user; as many sessions
# on one connection as lesson scripts open at once (OpenSSH's default is 10).
PasswordAuthentication yes
KbdInteractiveAuthentication no
UseDNS no
MaxSessions 100
`
	sudoersFile = "# endpointkit: members of group sudo need no password.\n%sudo ALL=(ALL:ALL) NOPASSWD: ALL\n"
	dataNICRule = `# endpointkit: data NICs (eth1, eth2, ... as the kernel names them) come up
# without addresses, under the names the image's NIC layout gives them.
ACTION=="add", SUBSYSTEM=="net", KERNEL=="eth[1-9]*", RUN+="/sbin/ip link set dev $name up"
`
	readyUnit = `[Unit]
Description=endpointkit readiness marker on the console
After=ssh.service networking.service network-online.target %s
Wants=network-online.target

[Service]
Type=oneshot
ExecStart=/bin/sh -c 'echo "` + agent.ReadyMarker + ` hostname=$(hostname) addr=$(ip -4 -o addr show dev %[2]s | sed -n "s/.* inet \\([^ ]*\\).*/\\1/p")" > /dev/console'

[Install]
WantedBy=multi-user.target
`
)

// shareUnit mounts the lesson share when the VM has a 9p device tagged
// "antidote" (an fstab line would report a failure on every VM without).
const shareUnit = `[Unit]
Description=endpointkit lesson share (9p tag ` + DefaultShareTag + `) at ` + DefaultSharePath + `
After=systemd-modules-load.service
Before=endpointkit-ready.service

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'for t in /sys/bus/virtio/drivers/9pnet_virtio/*/mount_tag; do [ -e "$t" ] && [ "$(tr -d "\\000" < "$t")" = ` + DefaultShareTag + ` ] && exec mount -t 9p -o trans=virtio,version=9p2000.L,msize=524288 ` + DefaultShareTag + " " + DefaultSharePath + `; done; exit 0'

[Install]
WantedBy=multi-user.target
`

func interfacesFile(dhcp bool, mgmt string) []byte {
	s := "# endpointkit: the primary interface " + mgmt + " (QEMU user or container network).\nauto lo\niface lo inet loopback\n"
	if dhcp {
		s += "\nauto " + mgmt + "\niface " + mgmt + " inet dhcp\n"
	}
	return []byte(s)
}

// configureRoot turns the debootstrapped tree into the endpoint: accounts,
// sshd, network, console readiness, modules, files, services and steps.
// It returns the SSH host keys generated during the build.
func (b *Builder) configureRoot(ctx context.Context, r *Recipe, in debootstrapInputs, root string) ([]vmimage.HostKey, error) {
	b.progress.Step("configure the root file system")
	var after []string
	for _, s := range append(r.Services, r.apis().Services...) {
		after = append(after, unitName(s))
	}
	fstab := "# endpointkit\n/dev/vda / ext4 rw,errors=remount-ro 0 1\n"
	nics := r.layout()
	mgmt := nics.ManagementNIC().Name
	plan := fsPlan{
		fileEntry("/etc/hostname", 0o644, []byte(r.Slug+"\n")),
		fileEntry("/etc/hosts", 0o644, []byte("127.0.0.1\tlocalhost\n127.0.1.1\t"+r.Slug+"\n::1\tlocalhost ip6-localhost ip6-loopback\n")),
		fileEntry("/etc/fstab", 0o644, []byte(fstab)),
		dirEntry(DefaultSharePath, 0o755, 0, 0),
		fileEntry("/etc/network/interfaces", 0o644, interfacesFile(*r.DHCP, mgmt)),
		fileEntry("/etc/udev/rules.d/90-endpointkit-data-nics.rules", 0o644, []byte(dataNICRule)),
		fileEntry("/etc/ssh/sshd_config.d/endpointkit.conf", 0o644, []byte(sshdConfig)),
		fileEntry("/etc/sudoers.d/endpointkit", 0o440, []byte(sudoersFile)),
		fileEntry("/etc/systemd/system/endpointkit-ready.service", 0o644, []byte(fmt.Sprintf(readyUnit, strings.Join(after, " "), mgmt))),
		fileEntry("/etc/systemd/system/endpointkit-share.service", 0o644, []byte(shareUnit)),
		fileEntry("/etc/machine-id", 0o444, nil),
	}
	plan = append(plan, r.apis().plan()...)
	plan = append(plan, linkFiles(nics)...)
	if err := plan.writeDir(root); err != nil {
		return nil, err
	}
	os.Remove(filepath.Join(root, "var/lib/dbus/machine-id"))
	if err := copyModules(ctx, in.kernel, root); err != nil {
		return nil, err
	}
	ch := &chroot{root: root, ctx: ctx}
	if err := ch.mountAPI(); err != nil {
		return nil, err
	}
	defer ch.unmountAPI()
	if err := b.createUsers(ch, r); err != nil {
		return nil, err
	}
	files, err := b.recipeFiles(r, root)
	if err != nil {
		return nil, err
	}
	if err := files.writeDir(root); err != nil {
		return nil, err
	}
	units := append(append([]string{"endpointkit-ready.service", "endpointkit-share.service", "ssh.service"}, consoleLoginUnits()...), after...)
	if err := ch.run("systemctl enable "+strings.Join(units, " "), "enable services"); err != nil {
		return nil, err
	}
	for i, step := range r.Steps {
		b.progress.Step(fmt.Sprintf("step %d: %s", i+1, stepTitle(step)))
		if err := ch.run(step, fmt.Sprintf("step %d", i+1)); err != nil {
			return nil, r.errAt(fmt.Sprintf("steps[%d]", i), "%v", err)
		}
	}
	if err := ch.run("apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/*.log /tmp/* /root/.bash_history", "clean up"); err != nil {
		return nil, err
	}
	return readHostKeys(root)
}

// stepTitle is a script step's first line, at most 60 bytes.
func stepTitle(s string) string {
	s = text.FirstLine(s)
	if len(s) > 60 {
		s = s[:60] + "…"
	}
	return s
}

func unitName(s string) string {
	if strings.Contains(s, ".") {
		return s
	}
	return s + ".service"
}

// createUsers adds the recipe's groups and users with their passwords and
// authorized keys.
func (b *Builder) createUsers(ch *chroot, r *Recipe) error {
	return ch.run(usersScript(r), "create users")
}

// usersScript is the shell script that adds the recipe's groups and users
// with their passwords and authorized keys (users that exist are updated).
func usersScript(r *Recipe) string {
	var script strings.Builder
	for _, u := range r.Users {
		for _, g := range u.Groups {
			fmt.Fprintf(&script, "getent group %s >/dev/null || groupadd %s\n", g, g)
		}
		fmt.Fprintf(&script, "id %s >/dev/null 2>&1 || useradd -m -s %s %s\n", u.Name, u.Shell, u.Name)
		if len(u.Groups) > 0 {
			fmt.Fprintf(&script, "usermod -a -G %s %s\n", strings.Join(u.Groups, ","), u.Name)
		}
		if u.Password != "" {
			fmt.Fprintf(&script, "echo %s | chpasswd\n", text.ShellQuote(u.Name+":"+u.Password))
		}
		if len(u.AuthorizedKeys) > 0 {
			fmt.Fprintf(&script, "install -d -m 700 -o %[1]s -g %[1]s /home/%[1]s/.ssh\nprintf '%%s\\n' %[2]s > /home/%[1]s/.ssh/authorized_keys\nchown %[1]s: /home/%[1]s/.ssh/authorized_keys\nchmod 600 /home/%[1]s/.ssh/authorized_keys\n",
				u.Name, text.ShellQuoteAll(u.AuthorizedKeys))
		}
	}
	return script.String()
}

// recipeFiles plans the recipe's files with owners looked up in the
// image's own passwd and group files.
func (b *Builder) recipeFiles(r *Recipe, root string) (fsPlan, error) {
	ids := func(file, name string) (int, error) {
		raw, err := os.ReadFile(filepath.Join(root, "etc", file))
		if err != nil {
			return 0, err
		}
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			f := strings.Split(sc.Text(), ":")
			if len(f) > 2 && f[0] == name {
				var id int
				fmt.Sscan(f[2], &id)
				return id, nil
			}
		}
		return 0, fmt.Errorf("no %s %q in the image", strings.TrimSuffix(file, "wd"), name)
	}
	var plan fsPlan
	for i, f := range r.Files {
		uid, gid := 0, 0
		if f.Owner != "" {
			un, gn, _ := strings.Cut(f.Owner, ":")
			var err error
			if uid, err = ids("passwd", un); err != nil {
				return nil, r.errAt(fmt.Sprintf("files[%d].owner", i), "%v", err)
			}
			if gn != "" {
				if gid, err = ids("group", gn); err != nil {
					return nil, r.errAt(fmt.Sprintf("files[%d].owner", i), "%v", err)
				}
			}
		}
		p, err := copyTree(f.Src, f.Dst, parseMode(f.Mode), uid, gid)
		if err != nil {
			return nil, err
		}
		plan = append(plan, p...)
	}
	return plan, nil
}

// readHostKeys reads the SSH host keys generated in the image.
func readHostKeys(root string) ([]vmimage.HostKey, error) {
	pubs, _ := filepath.Glob(filepath.Join(root, "etc/ssh/ssh_host_*_key.pub"))
	var keys []vmimage.HostKey
	for _, p := range pubs {
		raw, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		k, _, _, _, err := ssh.ParseAuthorizedKey(raw)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: host key %s: %w", p, err)
		}
		keys = append(keys, vmimage.HostKey{Type: k.Type(), Fingerprint: ssh.FingerprintSHA256(k), PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))})
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("imagebuild: no SSH host keys in the image (openssh-server's postinst makes them)")
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i].Type < keys[j].Type })
	return keys, nil
}

// copyModules copies part of the kernel's module tree (rootModuleDirs and
// every module those depend on, per modules.dep) into the image and runs
// depmod there.
func copyModules(ctx context.Context, k *kernel, root string) error {
	deps, err := k.moduleDeps()
	if err != nil {
		return err
	}
	var chosen []string
	for m := range deps {
		for _, d := range rootModuleDirs() {
			if strings.HasPrefix(m, d+"/") {
				chosen = append(chosen, m)
			}
		}
	}
	dst := filepath.Join(root, "lib", "modules", k.Version)
	var plan fsPlan
	for _, m := range withDeps(deps, chosen) {
		plan = append(plan, fsEntry{Path: m, Mode: 0o644, Src: k.modulePath(m)})
	}
	for _, f := range []string{"modules.builtin", "modules.builtin.modinfo", "modules.order"} {
		if _, err := os.Stat(k.modulePath(f)); err == nil {
			plan = append(plan, fsEntry{Path: f, Mode: 0o644, Src: k.modulePath(f)})
		}
	}
	if err := plan.writeDir(dst); err != nil {
		return err
	}
	if out, err := exec.CommandContext(ctx, "depmod", "-b", root, k.Version).CombinedOutput(); err != nil {
		return fmt.Errorf("imagebuild: depmod in the image: %v: %s", err, lastLines(out, 3))
	}
	return nil
}

// chroot runs shell snippets inside the image with /proc, /sys and /dev
// mounted and service starts forbidden (policy-rc.d).
type chroot struct {
	ctx    context.Context
	root   string
	mounts []string
}

func (c *chroot) mountAPI() error {
	for _, m := range []struct{ src, dst, fstype string }{
		{"proc", "proc", "proc"}, {"sysfs", "sys", "sysfs"}, {"/dev", "dev", ""}, {"/dev/pts", "dev/pts", ""},
	} {
		dst := filepath.Join(c.root, m.dst)
		os.MkdirAll(dst, 0o755)
		var err error
		if m.fstype == "" {
			err = unix.Mount(m.src, dst, "", unix.MS_BIND, "")
		} else {
			err = unix.Mount(m.src, dst, m.fstype, 0, "")
		}
		if err != nil {
			c.unmountAPI()
			return fmt.Errorf("imagebuild: mount %s in the image: %w", m.dst, err)
		}
		c.mounts = append(c.mounts, dst)
	}
	return os.WriteFile(filepath.Join(c.root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755)
}

func (c *chroot) unmountAPI() {
	os.Remove(filepath.Join(c.root, "usr/sbin/policy-rc.d"))
	for i := len(c.mounts) - 1; i >= 0; i-- {
		if err := unix.Unmount(c.mounts[i], 0); err != nil {
			unix.Unmount(c.mounts[i], unix.MNT_DETACH)
		}
	}
	c.mounts = nil
}

func (c *chroot) run(script, what string) error {
	cmd := exec.CommandContext(c.ctx, "chroot", c.root, "/bin/sh", "-ec", script)
	cmd.Env = []string{"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root",
		"DEBIAN_FRONTEND=noninteractive", "LC_ALL=C", "SYSTEMD_OFFLINE=1"}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("imagebuild: %s in the image failed (%v): %s", what, err, lastLines(out, 6))
	}
	return nil
}

// makeDisk builds an ext4 file system from root with mkfs.ext4 -d (no loop
// device) and converts it to a compressed qcow2.
func makeDisk(ctx context.Context, root, work, dst string, sizeMiB int) error {
	var used int64
	filepath.WalkDir(root, func(_ string, d fs.DirEntry, err error) error {
		if err == nil {
			if info, err := d.Info(); err == nil {
				used += (info.Size() + 4095) &^ 4095
			}
		}
		return nil
	})
	if sizeMiB == 0 {
		sizeMiB = int(used*3/2>>20) + 256
	}
	if int64(sizeMiB)<<20 < used {
		return fmt.Errorf("imagebuild: diskSizeMiB %d is smaller than the %d MiB of files", sizeMiB, used>>20)
	}
	raw := filepath.Join(work, "root.ext4")
	if out, err := exec.CommandContext(ctx, "mkfs.ext4", "-q", "-F", "-L", "root", "-d", root, raw, fmt.Sprintf("%dM", sizeMiB)).CombinedOutput(); err != nil {
		return fmt.Errorf("imagebuild: mkfs.ext4 -d: %v: %s", err, lastLines(out, 4))
	}
	tmp := dst + ".tmp"
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-c", "-o", "compression_type=zstd", "-f", "raw", "-O", "qcow2", raw, tmp).CombinedOutput(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("imagebuild: qemu-img convert: %v: %s", err, lastLines(out, 4))
	}
	return os.Rename(tmp, dst)
}

// writeStage1Initrd writes the initrd that mounts the root disk: the agent
// in stage-one mode and the disk modules.
func writeStage1Initrd(in debootstrapInputs, dst string) error {
	var mods []string
	p := fsPlan{
		{Path: "/init", Mode: 0o755, Src: in.agent},
		{Path: "/dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, Major: 5, Minor: 1},
		dirEntry("/proc", 0o555, 0, 0), dirEntry("/sys", 0o555, 0, 0), dirEntry("/run", 0o755, 0, 0),
		dirEntry("/newroot", 0o755, 0, 0),
	}
	for _, m := range in.modules {
		path := filepath.Join("/lib/modules", in.kernel.Version, m)
		p = append(p, fsEntry{Path: path, Mode: 0o644, Src: in.kernel.modulePath(m)})
		mods = append(mods, path)
	}
	cfg, err := json.Marshal(agent.Config{Mode: agent.ModeStage1, Modules: mods})
	if err != nil {
		return err
	}
	p = append(p, fileEntry(agent.ConfigFile, 0o644, cfg))
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	err = p.writeCPIO(w)
	if err == nil {
		err = w.Flush()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
