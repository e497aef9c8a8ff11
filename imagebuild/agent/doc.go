// Package agent is the guest agent of endpointkit's initramfs images: one
// static binary (built with CGO_ENABLED=0 from imagebuild/agent/cmd/ekagent)
// that is, depending on how it is started,
//
//   - /init, PID 1 of the tiny endpoint ([Init]): mounts /proc, /sys, /dev;
//     starts the SSH server; loads the kernel modules listed in its [Config]
//     (resolved at build time from modules.dep; the 9p stack only when the
//     VM has a virtio 9p device); sets the hostname from the kernel command
//     line parameter endpointkit.hostname=NAME; runs DHCP on eth0 in-process
//     (github.com/insomniacslk/dhcp) as soon as the interface exists,
//     writing /etc/resolv.conf and /run/endpointkit/dhcp.eth0, and renews
//     the lease; brings lo and the data NICs (eth1, eth2, …) up without
//     addresses; mounts the 9p share tagged "antidote" at /antidote when the
//     VM has one; prints the ready marker ([ReadyMarker]) on the console
//     once SSH listens and eth0 has its lease; reaps orphans; and on the
//     ACPI power button (QMP system_powerdown) or SIGUSR2/SIGTERM (busybox
//     poweroff and reboot) stops every process, syncs, unmounts and powers
//     off. Once ready (or after 15 s regardless) it keeps a console login
//     running on the kernel's console terminal ([Getty]). With
//     endpointkit.debug on the kernel command line it prints each boot step
//     with the kernel's uptime;
//   - the stage-one init of debootstrap images (Config.Mode "stage1"): loads
//     the modules, mounts the root disk named by root= and switches to its
//     /sbin/init;
//   - "ekagent serve": the SSH server ([Server]) built on
//     golang.org/x/crypto/ssh, with password and authorized-keys
//     authentication, exec, a shell with a pty, environment variables, exit
//     status and the sftp subsystem (github.com/pkg/sftp), every session
//     running as the logged-in user;
//   - "ekagent sftp-server": an sftp server on stdin/stdout, started by the
//     SSH server as the logged-in user;
//   - "ekagent getty TTY": the console login ([Getty]): a login prompt on
//     the serial console, the users' SSH passwords, their login shell on
//     the terminal;
//   - sudo (when invoked under that name, the binary being set-uid root): a
//     minimal sudo that lets root and members of the group "sudo" run a
//     command as root (or -u USER) without a password, the equivalent of
//     "%sudo ALL=(ALL) NOPASSWD: ALL". Started under any other name with a
//     set-uid bit, the binary drops the privilege before doing anything.
//
// Everything the agent needs to know is in /etc/endpointkit/agent.json
// ([ConfigFile]), written by imagebuild.
package agent
