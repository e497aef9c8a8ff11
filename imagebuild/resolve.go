package imagebuild

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/endpointkit/endpointkit/imagebuild/agent"
	"github.com/endpointkit/endpointkit/internal/strictyaml"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Defaults of a recipe.
const (
	DefaultUser        = "antidote"
	DefaultPassword    = "antidotepassword"
	DefaultSuite       = "bookworm"
	DefaultMirror      = "http://deb.debian.org/debian"
	DefaultKernel      = "linux-image-amd64"
	DefaultFlavor      = "trusted"
	DefaultShareTag    = "antidote"
	DefaultSharePath   = "/antidote"
	defaultInitrdShell = "/bin/sh"
	defaultDebianShell = "/bin/bash"
)

// defaultModules are loaded by every kernel-booted image: the virtio
// transports, NIC and disk, the ACPI power button with evdev (graceful
// system_powerdown), and the 9p stack for the lesson share.
func defaultModules() []string { return append(bootModules(), shareModules()...) }

// bootModules are defaultModules without the share's, NIC first (the
// tiny endpoint starts DHCP as soon as eth0 exists).
func bootModules() []string {
	return []string{"virtio_pci", "virtio_net", "virtio_blk", "button", "evdev"}
}

// shareModules are the 9p stack; the tiny endpoint loads them only when the
// VM has a virtio 9p device.
func shareModules() []string { return []string{"9pnet_virtio", "9p"} }

var (
	slugRe  = regexp.MustCompile(`^[A-Za-z0-9-]+$`)
	userRe  = regexp.MustCompile(`^[a-z_][a-z0-9_-]*$`)
	hexRe   = regexp.MustCompile(`^[0-9a-f]{64}$`)
	modeRe  = regexp.MustCompile(`^0?[0-7]{3,4}$`)
	debName = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
)

// Resolve fills in the defaults and validates the recipe. Every problem is
// reported (joined), each naming file:line:col and the field.
func (r *Recipe) Resolve() error {
	var errs []error
	bad := func(field, format string, a ...any) { errs = append(errs, r.errAt(field, format, a...)) }

	switch {
	case r.Slug == "":
		bad("slug", "missing: name the image (letters, digits, -)")
	case !slugRe.MatchString(r.Slug):
		bad("slug", "%q: use only letters, digits and -", r.Slug)
	}
	kind := vmimage.Kind(r.Kind)
	switch kind {
	case vmimage.KindInitramfs, vmimage.KindDebootstrap, vmimage.KindDisk, vmimage.KindISO:
	case "":
		bad("kind", "missing: one of initramfs, debootstrap, disk, iso")
	default:
		bad("kind", "%q: want one of initramfs, debootstrap, disk, iso%s", r.Kind, didYouMean(r.Kind, "initramfs", "debootstrap", "disk", "iso"))
	}
	switch r.Flavor {
	case "":
		r.Flavor = DefaultFlavor
	case "trusted", "untrusted", "legacy":
	default:
		bad("flavor", "%q: want trusted, untrusted or legacy%s", r.Flavor, didYouMean(r.Flavor, "trusted", "untrusted", "legacy"))
	}
	if (kind == vmimage.KindInitramfs || kind == vmimage.KindDebootstrap) && r.Kernel.Package == "" {
		r.Kernel.Package = DefaultKernel
	}
	if r.Kernel.Package != "" && !debName.MatchString(r.Kernel.Package) {
		bad("kernel.package", "%q is not a Debian package name", r.Kernel.Package)
	}
	if kind != vmimage.KindDebootstrap {
		for _, f := range []struct {
			name string
			set  bool
		}{{"suite", r.Suite != ""}, {"mirror", r.Mirror != ""}, {"packages", len(r.Packages) > 0 && kind != vmimage.KindISO},
			{"services", len(r.Services) > 0 && kind != vmimage.KindISO}, {"diskSizeMiB", r.DiskSizeMiB != 0}} {
			if f.set {
				bad(f.name, "only used by kind debootstrap (this recipe is %s)", r.Kind)
			}
		}
		switch {
		case len(r.Steps) == 0 || kind == vmimage.KindISO:
		case kind != vmimage.KindDisk:
			bad("steps", "only used by kinds debootstrap and iso (run in the image at build) and disk with disk.cloudInit (run at first boot)")
		case r.Disk != nil && !r.Disk.CloudInit:
			bad("steps", "a disk image runs steps at first boot through cloud-init: set disk.cloudInit: true (for an image that runs cloud-init)")
		}
	}
	if kind == vmimage.KindDebootstrap {
		if r.Suite == "" {
			r.Suite = DefaultSuite
		}
		if r.Mirror == "" {
			r.Mirror = DefaultMirror
		}
		if !strings.HasPrefix(r.Mirror, "http://") && !strings.HasPrefix(r.Mirror, "https://") && !strings.HasPrefix(r.Mirror, "file://") {
			bad("mirror", "%q: want an http://, https:// or file:// URL", r.Mirror)
		}
		for i, p := range r.Packages {
			if !debName.MatchString(p) {
				bad(fmt.Sprintf("packages[%d]", i), "%q is not a Debian package name", p)
			}
		}
	}
	if r.Agent != "" && kind != vmimage.KindInitramfs {
		bad("agent", "only used by kind initramfs")
	}
	if r.Agent != "" {
		r.Agent = r.abs(r.Agent)
		if _, err := os.Stat(r.Agent); err != nil {
			bad("agent", "%v", err)
		}
	}
	switch {
	case kind == vmimage.KindDisk && r.Disk == nil:
		bad("disk", "missing: kind disk needs disk.path or disk.url and disk.sha256")
	case kind != vmimage.KindDisk && r.Disk != nil:
		bad("disk", "only used by kind disk")
	case r.Disk != nil:
		d := r.Disk
		if (d.Path == "") == (d.URL == "") {
			bad("disk", "give exactly one of path and url")
		}
		if d.Path != "" {
			d.Path = r.abs(d.Path)
			if _, err := os.Stat(d.Path); err != nil {
				bad("disk.path", "missing base file: %v", err)
			}
		}
		if !hexRe.MatchString(d.SHA256) {
			bad("disk.sha256", "want the 64 lower-case hex digits of the file's sha256 (sha256sum FILE)")
		}
		switch d.Format {
		case "", "qcow2", "vmdk", "raw":
		default:
			bad("disk.format", "%q: want qcow2, vmdk or raw%s", d.Format, didYouMean(d.Format, "qcow2", "vmdk", "raw"))
		}
	}

	shell := defaultDebianShell
	if kind == vmimage.KindInitramfs {
		shell = defaultInitrdShell
	}
	if len(r.Users) == 0 {
		r.Users = []RecipeUser{{Name: DefaultUser, Password: DefaultPassword}}
	}
	names := map[string]bool{}
	for i := range r.Users {
		u := &r.Users[i]
		f := fmt.Sprintf("users[%d]", i)
		if !userRe.MatchString(u.Name) {
			bad(f+".name", "%q: want a lower-case user name", u.Name)
		}
		if names[u.Name] {
			bad(f+".name", "user %q given twice", u.Name)
		}
		names[u.Name] = true
		if u.Name == "root" {
			bad(f+".name", "root is not a login user; add a user in group sudo")
		}
		if u.Groups == nil {
			u.Groups = []string{"sudo"}
		}
		for j, g := range u.Groups {
			if !userRe.MatchString(g) {
				bad(fmt.Sprintf("%s.groups[%d]", f, j), "%q: want a group name", g)
			}
		}
		if u.Shell == "" {
			u.Shell = shell
		}
		if u.Password == "" && len(u.AuthorizedKeys) == 0 {
			bad(f, "user %q has neither password nor authorizedKeys: nobody could log in", u.Name)
		}
	}
	r.resolveAPIs(bad)
	if r.DHCP == nil {
		t := true
		r.DHCP = &t
	}
	for i := range r.Files {
		fc := &r.Files[i]
		f := fmt.Sprintf("files[%d]", i)
		if fc.Src == "" {
			bad(f+".src", "missing: a file or directory relative to the recipe")
		} else {
			fc.Src = r.abs(fc.Src)
			if _, err := os.Stat(fc.Src); err != nil {
				bad(f+".src", "missing base file: %v", err)
			}
		}
		if !strings.HasPrefix(fc.Dst, "/") {
			bad(f+".dst", "%q: want an absolute path in the image", fc.Dst)
		}
		if fc.Mode != "" && !modeRe.MatchString(fc.Mode) {
			bad(f+".mode", "%q: want an octal mode such as 0644", fc.Mode)
		}
	}
	if r.Readiness.SerialRegex != "" {
		if _, err := regexp.Compile(r.Readiness.SerialRegex); err != nil {
			bad("readiness.serialRegex", "%v", err)
		}
	}
	r.resolveISO(bad)
	if r.Bake != nil && *r.Bake && !r.baked() {
		bad("bake", "only kinds iso and disk with disk.cloudInit have a first boot to bake")
	}
	if r.Readiness.SerialRegex == "" {
		switch {
		case kind != vmimage.KindDisk || r.baked():
			r.Readiness.SerialRegex = agent.ReadyRegex
		case r.Disk != nil && r.Disk.CloudInit:
			r.Readiness.SerialRegex = CloudInitReadyRegex
		}
	}
	if r.Readiness.SSHPorts == nil {
		r.Readiness.SSHPorts = []int{r.APIs.SSH.Port}
		if p := r.APIs.NETCONF.port(DefaultNETCONFPort); p != 0 {
			r.Readiness.SSHPorts = append(r.Readiness.SSHPorts, p)
		}
	}
	if r.Readiness.TCPPorts == nil {
		r.Readiness.TCPPorts = r.APIs.httpPorts()
	}
	r.resolveNICs(bad)
	switch r.QEMU.DiskBus {
	case "", "virtio", "ide", "scsi":
	default:
		bad("qemu.diskBus", "%q: want virtio, ide or scsi%s", r.QEMU.DiskBus, didYouMean(r.QEMU.DiskBus, "virtio", "ide", "scsi"))
	}
	return errors.Join(errs...)
}

// didYouMean returns `; did you mean "X"?` when value looks like a typo of
// one of allowed, else "".
func didYouMean(value string, allowed ...string) string {
	if s := strictyaml.Suggest(value, allowed); s != "" {
		return fmt.Sprintf("; did you mean %q?", s)
	}
	return ""
}

func (r *Recipe) abs(p string) string {
	if filepath.IsAbs(p) || r.Dir == "" {
		return p
	}
	return filepath.Join(r.Dir, p)
}
