package imagebuild

import (
	"encoding/base64"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/endpointkit/endpointkit/internal/text"
)

// ProvisionScript returns the shell script that turns an installed Debian into
// the recipe's endpoint, run as root inside it (the installer's late
// command runs it in the target system): the users, sudo without a
// password for group sudo, sshd's password logins, the recipe's and the
// APIs' packages and files, the identity, readiness and bake services,
// the recipe's services enabled and its steps, in that order — the same
// steps as the debootstrap builder's, in shell.
func ProvisionScript(r *Recipe) (string, error) {
	if err := r.Resolve(); err != nil {
		return "", err
	}
	var s strings.Builder
	s.WriteString("#!/bin/sh\n# endpointkit imagebuild: provision the installed system (recipe " + r.Slug + ").\nset -eu\nexport DEBIAN_FRONTEND=noninteractive LC_ALL=C\n")
	s.WriteString("echo 'endpointkit: provisioning'\n")
	s.WriteString(usersScript(r))
	writeShellFile(&s, "/etc/sudoers.d/endpointkit", 0o440, []byte(sudoersFile))
	writeShellFile(&s, "/etc/ssh/sshd_config.d/endpointkit.conf", 0o644, []byte(sshdConfig))
	api := r.apis()
	if pkgs := append(append([]string{"openssh-server", "sudo"}, r.Packages...), api.Packages...); len(pkgs) > 0 {
		fmt.Fprintf(&s, "apt-get install -y --no-install-recommends %s\n", strings.Join(pkgs, " "))
	}
	for _, f := range append(append(api.Files, r.bakeFiles()...), apiFile{"/etc/systemd/system/endpointkit-bake.service", 0o644, bakeUnit}) {
		writeShellFile(&s, f.Path, fs.FileMode(f.Mode), []byte(f.Content))
	}
	for i, f := range r.Files {
		plan, err := copyTree(f.Src, f.Dst, parseMode(f.Mode), 0, 0)
		if err != nil {
			return "", r.errAt(fmt.Sprintf("files[%d].src", i), "%v", err)
		}
		for _, e := range plan {
			if err := writeShellEntry(&s, e, f.Owner); err != nil {
				return "", r.errAt(fmt.Sprintf("files[%d].src", i), "%v", err)
			}
		}
	}
	units := []string{"endpointkit-identity.service", "endpointkit-ready.service", "endpointkit-bake.service", "ssh.service"}
	for _, u := range append(r.Services, api.Services...) {
		units = append(units, unitName(u))
	}
	fmt.Fprintf(&s, "systemctl enable %s\n", strings.Join(units, " "))
	for i, step := range r.Steps {
		fmt.Fprintf(&s, "echo 'endpointkit: step %d'\nsh -ec %s\n", i+1, text.ShellQuote(step))
	}
	// GRUB's menu waits 5 s at every boot by default.
	s.WriteString("if [ -f /etc/default/grub ]; then sed -i 's/^GRUB_TIMEOUT=.*/GRUB_TIMEOUT=0/' /etc/default/grub && update-grub; fi\n")
	s.WriteString("apt-get clean\necho 'endpointkit: provisioned'\n")
	return s.String(), nil
}

// bakeUnit ends an iso image's bake boot: once the image is up, it
// clears what instances must not share, prints BakeMarker and powers off.
// It runs only when the builder asks for it (fw_cfg item
// opt/endpointkit/bake), never in an instance.
const bakeUnit = `[Unit]
Description=endpointkit bake: clean up for instances and power off (build time only)
After=endpointkit-ready.service endpointkit-identity.service
ConditionPathExists=/sys/firmware/qemu_fw_cfg/by_name/opt/endpointkit/bake/raw

[Service]
Type=oneshot
ExecStart=/bin/sh -ec '` + bakeUnitScript + `'

[Install]
WantedBy=multi-user.target
`

// bakeUnitScript is bakeCleanup on one line, for a unit's ExecStart,
// followed by the marker and the power-off.
const bakeUnitScript = `rm -f /etc/ssh/ssh_host_* /var/lib/dhcp/*.leases /var/lib/dbus/machine-id; truncate -s 0 /etc/machine-id; apt-get clean || true; fstrim -a || true; echo "` + BakeMarker + ` hostname=$$(hostname)" > /dev/console; systemctl --no-block poweroff`

// bakeFWCfgName is the fw_cfg item that turns the bake unit on.
const bakeFWCfgName = "opt/endpointkit/bake"

// writeShellFile appends shell that writes data to path with mode perm.
func writeShellFile(s *strings.Builder, path string, perm fs.FileMode, data []byte) {
	fmt.Fprintf(s, "install -d %s\nbase64 -d > %s <<'ENDPOINTKIT_EOF'\n%s\nENDPOINTKIT_EOF\nchmod %04o %s\n",
		text.ShellQuote(dirOf(path)), text.ShellQuote(path), wrap(base64.StdEncoding.EncodeToString(data), 76), perm.Perm(), text.ShellQuote(path))
}

// writeShellEntry appends shell that recreates one planned file-system entry,
// owned by owner (user[:group], default root).
func writeShellEntry(s *strings.Builder, e fsEntry, owner string) error {
	q := text.ShellQuote(e.Path)
	switch {
	case e.Mode.IsDir():
		fmt.Fprintf(s, "install -d -m %04o %s\n", e.Mode.Perm(), q)
	case e.Mode&fs.ModeSymlink != 0:
		fmt.Fprintf(s, "ln -sfn %s %s\n", text.ShellQuote(e.Link), q)
	default:
		data := e.Data
		if e.Src != "" {
			var err error
			if data, err = os.ReadFile(e.Src); err != nil {
				return err
			}
		}
		writeShellFile(s, e.Path, e.Mode, data)
	}
	if owner != "" {
		fmt.Fprintf(s, "chown -h %s %s\n", text.ShellQuote(owner), q)
	}
	return nil
}

func dirOf(p string) string {
	if i := strings.LastIndex(p, "/"); i > 0 {
		return p[:i]
	}
	return "/"
}

func wrap(s string, n int) string {
	var b strings.Builder
	for len(s) > n {
		b.WriteString(s[:n])
		b.WriteByte('\n')
		s = s[n:]
	}
	b.WriteString(s)
	return b.String()
}
