package agent

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// stage1 mounts the root filesystem named by root= (rootfstype=,
// rootflags=, ro/rw) on /newroot, writes the hostname from the command
// line into it, moves the API filesystems over and executes /sbin/init
// there (init= overrides). It only returns on error.
func stage1(params map[string]string, say func(string, ...any)) error {
	dev := params["root"]
	if dev == "" {
		return fmt.Errorf("agent: stage1: no root= on the kernel command line")
	}
	fstype := params["rootfstype"]
	if fstype == "" {
		fstype = "ext4"
	}
	var flags uintptr
	if _, ro := params["ro"]; ro {
		flags |= unix.MS_RDONLY
	}
	for i := 0; ; i++ { // the disk shows up while virtio_blk probes
		if _, err := os.Stat(dev); err == nil {
			break
		}
		if i == 100 {
			return fmt.Errorf("agent: stage1: root device %s did not appear in 10 s", dev)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := os.MkdirAll("/newroot", 0o755); err != nil {
		return err
	}
	if err := unix.Mount(dev, "/newroot", fstype, flags, params["rootflags"]); err != nil {
		return fmt.Errorf("agent: stage1: mount %s (%s) on /newroot: %w", dev, fstype, err)
	}
	if name := params[HostnameParam]; name != "" && flags&unix.MS_RDONLY == 0 {
		os.WriteFile("/newroot/etc/hostname", []byte(name+"\n"), 0o644)
	}
	for _, m := range []string{"/dev", "/proc", "/sys", "/run"} {
		if err := unix.Mount(m, "/newroot"+m, "", unix.MS_MOVE, ""); err != nil {
			return fmt.Errorf("agent: stage1: move %s: %w", m, err)
		}
	}
	if err := os.Chdir("/newroot"); err != nil {
		return err
	}
	if err := unix.Mount(".", "/", "", unix.MS_MOVE, ""); err != nil {
		return fmt.Errorf("agent: stage1: move root: %w", err)
	}
	if err := unix.Chroot("."); err != nil {
		return fmt.Errorf("agent: stage1: chroot: %w", err)
	}
	os.Chdir("/")
	init := params["init"]
	if init == "" {
		init = "/sbin/init"
	}
	say("switching to %s on %s", init, dev)
	// systemd reads its own parameters from /proc/cmdline.
	err := unix.Exec(init, []string{init}, os.Environ())
	return fmt.Errorf("agent: stage1: exec %s: %w", init, err)
}
