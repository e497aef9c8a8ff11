package qemulaunch

import (
	"fmt"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// ShareTag is the 9p mount tag of the lesson directory.
const ShareTag = "antidote"

// HostnameParam is the kernel command line parameter carrying the guest's
// hostname.
const HostnameParam = "endpointkit.hostname"

// Plan is everything Start will create and run, computed from a Config
// without touching the system.
type Plan struct {
	Binary string
	Args   []string // QEMU arguments, without the binary
	Accel  Accel
	Dir    StateDir
	// Overlay is the per-instance disk over BaseDisk; empty when the image
	// has no disk.
	Overlay, BaseDisk, BaseFormat string
	Interfaces                    []Interface // data NICs, in NIC order
	Stitch                        StitchMode
	Forwards                      []Forward
	Timeouts                      Timeouts // already scaled for Accel
}

// Command returns the command line as one shell-quoted string, for logs
// and for reproducing a launch by hand.
func (p *Plan) Command() string {
	q := make([]string, 0, len(p.Args)+1)
	for _, a := range append([]string{p.Binary}, p.Args...) {
		if a == "" || strings.ContainsAny(a, " \t\n'\"\\$`;&|<>()*?[]#~{}") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		q = append(q, a)
	}
	return strings.Join(q, " ")
}

// Plan computes the QEMU command line. Accel must be kvm or tcg (Start
// resolves auto); forwards must have concrete host ports or 0 (same as the
// guest port). Plan reads nothing from disk, so it is safe on any machine.
func (c Config) Plan() (*Plan, error) {
	c = c.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	if c.Accel == AccelAuto {
		return nil, configErr("Accel", "auto must be resolved before planning (Start does; or call ResolveAccel)")
	}
	m := c.Image.Manifest
	dir := StateDir(c.StateDir)
	p := &Plan{
		Binary:     c.Binary,
		Accel:      c.Accel,
		Dir:        dir,
		Interfaces: c.Interfaces,
		Stitch:     c.Stitch,
		Timeouts:   c.Timeouts.scaled(c.Accel),
	}
	for _, f := range c.Forwards {
		if f.HostPort == 0 {
			f.HostPort = f.GuestPort
		}
		f.Proto = f.proto()
		p.Forwards = append(p.Forwards, f)
	}

	args := []string{
		"-name", qemuOpt(c.Name),
		"-machine", c.Machine + ",accel=" + string(c.Accel),
	}
	if c.Accel == AccelKVM {
		args = append(args, "-cpu", "host")
	} else if c.CPU != "" {
		args = append(args, "-cpu", c.CPU)
	}
	args = append(args,
		"-m", fmt.Sprint(c.MemoryMiB),
		"-smp", fmt.Sprint(c.CPUs),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-chardev", "stdio,id=console0,signal=off",
		"-serial", "chardev:console0",
		"-qmp", "unix:"+qemuOpt(dir.QMPSocket())+",server=on,wait=off",
	)

	if m.Kernel != "" {
		args = append(args, "-kernel", c.Image.Path(m.Kernel))
		if m.Initrd != "" {
			args = append(args, "-initrd", c.Image.Path(m.Initrd))
		}
		cmdline := strings.TrimSpace(strings.Join(append([]string{m.Cmdline}, c.KernelArgs...), " "))
		cmdline = strings.TrimSpace(cmdline + " " + HostnameParam + "=" + c.Name)
		args = append(args, "-append", cmdline)
	} else if len(c.KernelArgs) > 0 {
		return nil, configErr("KernelArgs", "image %s boots its own bootloader; kernel arguments cannot be passed", m.Slug)
	}

	devs, err := c.placeDevices(p)
	if err != nil {
		return nil, err
	}
	if m.Kernel == "" && m.Disk == "" {
		return nil, fmt.Errorf("%w: %s: manifest names neither a kernel nor a disk", ErrImage, imageManifest(c.Image))
	}
	var a ids
	for _, d := range devs {
		da, err := d.args(&a)
		if err != nil {
			return nil, configErr("devices", "%v", err)
		}
		args = append(args, da...)
	}
	args = append(args, m.QEMU.ExtraArgs...)
	args = append(args, c.ExtraArgs...)
	p.Args = args
	return p, nil
}

func imageManifest(im *vmimage.Image) string {
	return im.Path(vmimage.ManifestFile)
}
