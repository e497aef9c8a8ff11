package imagebuild

// consoleLoginUnits are the systemd units that give a debootstrap image a
// login on its serial console, the kernel console ttyS0 (`lesson console
// EP`, the way in when SSH is not): serial-getty enabled explicitly, not
// left to systemd-getty-generator, which starts it only while console=
// names the port on the kernel command line.
func consoleLoginUnits() []string { return []string{"serial-getty@ttyS0.service"} }
