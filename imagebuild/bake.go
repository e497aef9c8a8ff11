package imagebuild

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/vmimage"
)

// BakeMarker starts the line a bake boot prints on the console once the
// image's first-boot work is done and the image is cleaned for instances
// (no host keys, empty machine-id, cloud-init off); the guest then powers
// off and the builder compacts the disk.
const BakeMarker = "endpointkit: baked"

// bakeFormat names what a bake does to an image; part of the cache key of
// baked images.
const bakeFormat = "bake/1: identity from fw_cfg, ready unit, cloud-init disabled, host keys and machine-id cleared, fstrim"

// bakeTimeout is the default bound of a bake boot; bakePowerOff bounds
// the power-off after its marker.
const (
	bakeTimeout  = 30 * time.Minute
	bakePowerOff = 3 * time.Minute
)

// baked reports whether r's first boot is baked into its image: disk
// images with disk.cloudInit and iso images, unless bake: false.
func (r *Recipe) baked() bool {
	switch {
	case r.Bake != nil && !*r.Bake:
		return false
	case r.Kind == string(vmimage.KindISO):
		return true
	}
	return r.Kind == string(vmimage.KindDisk) && r.Disk != nil && r.Disk.CloudInit
}

// identityScript installs the instance's identity from fw_cfg (see
// vmimage.Identity) before sshd starts. Without one it prints why on the
// console and leaves the guest without host keys: sshd does not start.
const identityScript = `#!/bin/sh
# endpointkit: this instance's identity (hostname, SSH host keys) from the
# QEMU fw_cfg item ` + vmimage.IdentityFWCfgName + `, written by the launcher.
# Without it the guest has no SSH host keys and sshd does not start.
item=/sys/firmware/qemu_fw_cfg/by_name/` + vmimage.IdentityFWCfgName + `/raw
[ -r "$item" ] || modprobe qemu_fw_cfg 2>/dev/null
n=0
while [ ! -r "$item" ] && [ $n -lt 50 ]; do sleep 0.1; n=$((n + 1)); done
rm -f /etc/ssh/ssh_host_*
if [ ! -r "$item" ]; then
	echo "endpointkit: no instance identity (fw_cfg ` + vmimage.IdentityFWCfgName + `): no SSH host keys, sshd stays down" > /dev/console
	exit 1
fi
while read -r name value; do
	case "$name" in
	hostname)
		case "$value" in '' | *[!A-Za-z0-9-]*) echo "endpointkit: bad hostname in the instance identity" > /dev/console; exit 1 ;; esac
		echo "$value" > /etc/hostname
		hostname "$value"
		sed -i '/^127\.0\.1\.1[[:space:]]/d' /etc/hosts
		printf '127.0.1.1\t%s\n' "$value" >> /etc/hosts
		;;
	ssh_host_ed25519_key | ssh_host_ecdsa_key | ssh_host_rsa_key)
		(umask 077 && printf '%s' "$value" | base64 -d > "/etc/ssh/$name")
		ssh-keygen -y -f "/etc/ssh/$name" > "/etc/ssh/$name.pub"
		;;
	esac
done < "$item"
`

const identityUnit = `[Unit]
Description=endpointkit instance identity (hostname, SSH host keys) from QEMU fw_cfg
DefaultDependencies=no
After=local-fs.target systemd-remount-fs.service
Before=sysinit.target network-pre.target ssh.service
Wants=network-pre.target

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/usr/lib/endpointkit/identity

[Install]
WantedBy=sysinit.target
`

// bakeCleanup ends a bake boot: instances must not share host keys,
// machine-id or leases, and do not run cloud-init again.
const bakeCleanup = `touch /etc/cloud/cloud-init.disabled
rm -f /etc/ssh/ssh_host_* /var/lib/dhcp/*.leases /var/lib/dbus/machine-id
truncate -s 0 /etc/machine-id
apt-get clean || true
fstrim -a || true
`

// bakeFiles are the guest files a baked image needs besides the APIs':
// the identity service and the readiness marker.
func (r *Recipe) bakeFiles() []apiFile {
	var after []string
	for _, s := range append(r.Services, r.apis().Services...) {
		after = append(after, unitName(s))
	}
	return []apiFile{
		{"/usr/lib/endpointkit/identity", 0o755, identityScript},
		{"/etc/systemd/system/endpointkit-identity.service", 0o644, identityUnit},
		{"/etc/systemd/system/endpointkit-ready.service", 0o644, fmt.Sprintf(readyUnit, strings.Join(after, " "), r.layout().ManagementNIC().Name)},
	}
}

// bakeSeed is the seed of a disk image's bake boot: the recipe's seed,
// plus the API packages and files, the identity and ready services, the
// clean-up, the bake marker and a power-off.
func bakeSeed(r *Recipe, instanceID string) (*Seed, error) {
	api := r.apis()
	return newSeed(r, instanceID, func(cc *cloudConfig) {
		cc.Packages = api.Packages
		for _, f := range append(api.Files, r.bakeFiles()...) {
			cc.WriteFiles = append(cc.WriteFiles, cloudFile{Path: f.Path, Permissions: fmt.Sprintf("%#o", f.Mode), Content: f.Content})
		}
		units := append([]string{"endpointkit-identity.service", "endpointkit-ready.service"}, api.Services...)
		for _, s := range r.Services {
			units = append(units, unitName(s))
		}
		cc.Runcmd = append(cc.Runcmd, append([]string{"systemctl", "enable"}, units...), []string{"sh", "-ec", bakeCleanup})
		cc.FinalMessage = BakeMarker + " hostname=" + r.Slug + " up $UPTIME s"
		cc.PowerState = &cloudPowerState{Mode: "poweroff", Message: "endpointkit: bake done, powering off", Timeout: 60}
	})
}

// bakeDisk boots disk (qcow2) once with seed attached, waits for the bake
// marker and the guest's own power-off, and compacts the disk in place.
func (b *Builder) bakeDisk(ctx context.Context, disk string, seed []byte, memMiB int) error {
	seedPath := disk + ".bake-seed.iso"
	if err := os.WriteFile(seedPath, seed, 0o600); err != nil {
		return err
	}
	defer os.Remove(seedPath)
	args := append(buildVMArgs(memMiB),
		"-drive", "file="+disk+",format=qcow2,if=virtio,cache=unsafe,discard=unmap",
		"-drive", "file="+seedPath+",format=raw,if=virtio,readonly=on",
		"-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0")
	b.progress.Step("bake: first boot, saved into the image")
	if err := b.bakeBoot(ctx, args); err != nil {
		return err
	}
	return compactQcow2(ctx, disk)
}

// bakeBoot runs a bake boot: QEMU with args until the guest prints
// BakeMarker and powers itself off.
func (b *Builder) bakeBoot(ctx context.Context, args []string) error {
	lines := b.progress.Lines("bake boot").(*lineWriter)
	defer lines.Close()
	start := time.Now()
	vm, err := startBuildVM(args, lines)
	if err != nil {
		return err
	}
	defer vm.kill()
	marker := regexp.MustCompile(regexp.QuoteMeta(BakeMarker) + `\b`)
	if err := vm.wait(ctx, vmWatch{what: "bake boot", marker: marker, deadline: b.opts.BakeTimeout}); err != nil {
		return err
	}
	select {
	case <-vm.done:
	case <-time.After(bakePowerOff):
		con, _ := vm.text()
		return &BuildVMError{What: "bake boot", Msg: fmt.Sprintf("printed %q but did not power off within %s", BakeMarker, bakePowerOff), Console: consoleTail(con, 30)}
	}
	if vm.err != nil {
		con, _ := vm.text()
		return &BuildVMError{What: "bake boot", Msg: fmt.Sprintf("qemu: %v", vm.err), Console: consoleTail(con, 30)}
	}
	b.log.Info("baked", "elapsed", time.Since(start).Round(time.Second))
	return nil
}

// compactQcow2 rewrites a qcow2 compressed (zstd), dropping unused and
// discarded clusters.
func compactQcow2(ctx context.Context, disk string) (err error) {
	tmp := filepath.Join(filepath.Dir(disk), "."+filepath.Base(disk)+".compact")
	defer removeOnError(&err, tmp)
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-c", "-o", "compression_type=zstd", "-f", "qcow2", "-O", "qcow2", disk, tmp).CombinedOutput(); err != nil {
		return fmt.Errorf("imagebuild: compact %s: %v: %s", disk, err, lastLines(out, 3))
	}
	return os.Rename(tmp, disk)
}

// firstBoot gives a cloud-init disk image its first boot: baked into the
// disk (m then asks for a per-instance identity and has no seed), or as a
// seed every instance boots with (m lists the seed's host keys).
func (b *Builder) firstBoot(ctx context.Context, r *Recipe, dir string, m *vmimage.Manifest, instanceID string) error {
	if !r.baked() {
		seed, err := NewSeed(r, instanceID)
		if err != nil {
			return err
		}
		iso, err := seed.ISO()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, SeedFile), iso, 0o644); err != nil {
			return err
		}
		m.Seed, m.HostKeys = SeedFile, seed.HostKeys
		return nil
	}
	seed, err := bakeSeed(r, instanceID+"-bake")
	if err != nil {
		return err
	}
	iso, err := seed.ISO()
	if err != nil {
		return err
	}
	if err := b.bakeDisk(ctx, filepath.Join(dir, DiskFile), iso, m.QEMU.MemoryMiB); err != nil {
		return fmt.Errorf("imagebuild: %s: %w", r.Path, err)
	}
	m.Identity = vmimage.IdentityFWCfg
	return nil
}
