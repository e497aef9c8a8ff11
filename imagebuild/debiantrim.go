package imagebuild

// DebianBootTrim is what a debootstrap image's kernel command line adds
// to make the boot to SSH short under TCG (docs/performance.md, "Debian
// endpoint boot"): the tiny image's kernel settings (no crypto
// self-tests, PCI interrupts from the BIOS table — acpi=noirq, which
// keeps ACPI PCI hot-plug for NICs added later —, one UART), no fsck of
// the root (a fresh overlay of a clean image), and systemd units an
// endpoint does not need masked for the boot: udevadm settle before
// ifupdown (the stage-one init has loaded the NIC, eth0 exists), the ext4
// scrub clean-up, the VGA console's getty, binfmt, and the kernel
// API file systems and modprobe@ services nothing in the image uses.
// They are boot parameters, not changes to the image, so a lesson that
// needs one of them back removes it from its launcher's command line, and
// an A/B of the two boots needs no second image.
func DebianBootTrim() []string {
	return []string{
		"cryptomgr.notests", "acpi=noirq", "8250.nr_uarts=1", "fsck.mode=skip",
		"systemd.mask=ifupdown-pre.service", "systemd.mask=e2scrub_reap.service",
		"systemd.mask=getty@tty1.service", "systemd.mask=systemd-binfmt.service",
		"systemd.mask=proc-sys-fs-binfmt_misc.automount",
		"systemd.mask=dev-hugepages.mount", "systemd.mask=dev-mqueue.mount",
		"systemd.mask=sys-kernel-debug.mount", "systemd.mask=sys-kernel-tracing.mount",
		"systemd.mask=sys-fs-fuse-connections.mount", "systemd.mask=sys-kernel-config.mount",
		"systemd.mask=modprobe@drm.service", "systemd.mask=modprobe@efi_pstore.service",
		"systemd.mask=modprobe@fuse.service", "systemd.mask=modprobe@loop.service",
		"systemd.mask=modprobe@dm_mod.service", "systemd.mask=modprobe@configfs.service",
	}
}
