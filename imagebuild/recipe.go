package imagebuild

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
	"gopkg.in/yaml.v3"
)

// RecipeFile is the recipe's file name inside a recipe directory.
const RecipeFile = "image.yaml"

// Recipe is a decoded image.yaml: what to build. Zero fields take the
// defaults documented on each field ([Recipe.Resolve] fills them in).
type Recipe struct {
	// Slug names the image (Antidote's image slug): letters, digits, "-".
	Slug string `yaml:"slug" json:"slug" jsonschema:"pattern=^[A-Za-z0-9-]+$"`
	// Description is one line for image.meta.yaml.
	Description string `yaml:"description,omitempty" json:"description,omitempty"`
	// Kind selects the builder: initramfs, debootstrap, disk or iso.
	Kind string `yaml:"kind" json:"kind" jsonschema:"enum=initramfs,enum=debootstrap,enum=disk,enum=iso"`
	// Flavor is Antidote's image flavor: trusted (default), untrusted, legacy.
	Flavor string `yaml:"flavor,omitempty" json:"flavor,omitempty" jsonschema:"enum=trusted,enum=untrusted,enum=legacy"`

	// Kernel is the Debian kernel for direct boot (initramfs, debootstrap).
	Kernel Kernel `yaml:"kernel,omitempty" json:"kernel,omitempty"`
	// Agent is a pre-built guest agent binary (initramfs only), relative to
	// the recipe directory; empty builds it from this module with `go build`.
	Agent string `yaml:"agent,omitempty" json:"agent,omitempty"`

	// Suite is the Debian suite for debootstrap (default bookworm).
	Suite string `yaml:"suite,omitempty" json:"suite,omitempty"`
	// Mirror is the Debian mirror for debootstrap (default
	// http://deb.debian.org/debian).
	Mirror string `yaml:"mirror,omitempty" json:"mirror,omitempty"`
	// Packages are installed on top of the base set (debootstrap).
	Packages []string `yaml:"packages,omitempty" json:"packages,omitempty"`
	// Services are systemd units enabled in the image (debootstrap).
	Services []string `yaml:"services,omitempty" json:"services,omitempty"`
	// DiskSizeMiB is the root filesystem size; default: content + 50 % +
	// 256 MiB (debootstrap).
	DiskSizeMiB int `yaml:"diskSizeMiB,omitempty" json:"diskSizeMiB,omitempty" jsonschema:"minimum=0"`

	// Disk is the vendor disk of a disk image.
	Disk *DiskSource `yaml:"disk,omitempty" json:"disk,omitempty"`
	// ISO is the installer of an iso image and its answer file.
	ISO *ISOSource `yaml:"iso,omitempty" json:"iso,omitempty"`
	// Bake (disk with disk.cloudInit, iso) runs the image's first boot
	// once at build time and saves it into the disk, so that instances
	// boot without a seed and repeat no first-boot work; each instance
	// still gets its own hostname, SSH host keys and machine-id. Default
	// true.
	Bake *bool `yaml:"bake,omitempty" json:"bake,omitempty"`

	// Users are the accounts; default one: antidote / antidotepassword in
	// group sudo (passwordless sudo).
	Users []RecipeUser `yaml:"users,omitempty" json:"users,omitempty"`
	// APIs are the management APIs the image offers; declaring one
	// installs and enables what it needs (default ssh: true, port 22).
	APIs RecipeAPIs `yaml:"apis,omitempty" json:"apis,omitempty"`
	// DHCP runs a DHCP client on the primary interface eth0 (default true).
	DHCP *bool `yaml:"dhcp,omitempty" json:"dhcp,omitempty"`
	// Files are copied into the image.
	Files []RecipeFileCopy `yaml:"files,omitempty" json:"files,omitempty"`
	// Steps are shell commands run in the image (/bin/sh -ec), in order:
	// for debootstrap at build time in a chroot, after packages, users and
	// files; for disk with disk.cloudInit at the end of the first boot, as
	// root, through cloud-init's runcmd.
	Steps []string `yaml:"steps,omitempty" json:"steps,omitempty"`
	// NetworkInterfaces are the guest's names of the data NICs 1, 2, …
	// (the container's eth1, eth2, …), written to image.meta.yaml and made
	// true in the guest (default: the kernel's eth1, eth2, …, or the names
	// nics.naming gives).
	NetworkInterfaces []string `yaml:"networkInterfaces,omitempty" json:"networkInterfaces,omitempty"`
	// NICs lays the guest's NICs out on the PCI bus (default: the
	// management NIC in slot 2, the data NICs one per slot from slot 3).
	NICs RecipeNICs `yaml:"nics,omitempty" json:"nics,omitzero"`

	// Tests are the image's self-tests: shell scripts run as the first
	// user over SSH after boot, each expected to exit 0 (`imagebuild test`,
	// and `imagebuild build --test`).
	Tests []RecipeTest `yaml:"tests,omitempty" json:"tests,omitempty"`

	// QEMU are the launcher hints.
	QEMU RecipeQEMU `yaml:"qemu,omitempty" json:"qemu,omitempty"`
	// Readiness says how a launcher knows the guest is up (defaults per
	// kind: the agent's serial marker and an SSH handshake on port 22).
	Readiness RecipeReadiness `yaml:"readiness,omitempty" json:"readiness,omitempty"`

	// Dir is the recipe's directory (relative paths resolve against it);
	// Path its file. Set by the loader, not in YAML.
	Dir  string `yaml:"-" json:"-"`
	Path string `yaml:"-" json:"-"`
	// Warnings are problems that did not stop the parse (a second YAML
	// document, which is ignored). Set by the parser, not in YAML.
	Warnings []*RecipeError `yaml:"-" json:"-"`

	pos strictyaml.Positions
}

// Kernel selects the kernel package and extra modules.
type Kernel struct {
	// Package is a Debian kernel image package (default linux-image-amd64,
	// resolved to the concrete linux-image-<version>-amd64).
	Package string `yaml:"package,omitempty" json:"package,omitempty"`
	// Modules are loaded at boot besides the defaults (virtio net/blk, 9p,
	// ACPI power button).
	Modules []string `yaml:"modules,omitempty" json:"modules,omitempty"`
	// Cmdline is appended to the default kernel command line.
	Cmdline string `yaml:"cmdline,omitempty" json:"cmdline,omitempty"`
}

// DiskSource is a vendor disk image.
type DiskSource struct {
	// Path (relative to the recipe) or URL (http, https, file, or a blob
	// store URL) of the disk image; exactly one of Path and URL.
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	URL  string `yaml:"url,omitempty" json:"url,omitempty"`
	// SHA256 of the source file, hex; required.
	SHA256 string `yaml:"sha256" json:"sha256" jsonschema:"pattern=^[0-9a-f]{64}$"`
	// Format is qcow2, vmdk or raw (default: detected by qemu-img).
	Format string `yaml:"format,omitempty" json:"format,omitempty" jsonschema:"enum=qcow2,enum=vmdk,enum=raw"`
	// CloudInit adds a NoCloud seed disk (for images that run cloud-init)
	// creating the users, setting the hostname to the slug, installing SSH
	// host keys generated at build (recorded in the manifest) and running
	// the steps at first boot.
	CloudInit bool `yaml:"cloudInit,omitempty" json:"cloudInit,omitempty"`
}

// RecipeUser is an account in the image.
type RecipeUser struct {
	Name     string `yaml:"name" json:"name" jsonschema:"pattern=^[a-z_][a-z0-9_-]*$"`
	Password string `yaml:"password,omitempty" json:"password,omitempty"`
	// Groups default to [sudo]; sudo members need no password.
	Groups         []string `yaml:"groups,omitempty" json:"groups,omitempty"`
	AuthorizedKeys []string `yaml:"authorizedKeys,omitempty" json:"authorizedKeys,omitempty"`
	// Shell defaults to /bin/bash (debootstrap) or /bin/sh (initramfs).
	Shell string `yaml:"shell,omitempty" json:"shell,omitempty"`
}

// RecipeFileCopy copies one file or directory into the image.
type RecipeFileCopy struct {
	Src   string `yaml:"src" json:"src"` // relative to the recipe directory
	Dst   string `yaml:"dst" json:"dst"` // absolute path in the image
	Mode  string `yaml:"mode,omitempty" json:"mode,omitempty" jsonschema:"pattern=^0?[0-7]{3\\,4}$"`
	Owner string `yaml:"owner,omitempty" json:"owner,omitempty"` // user[:group], default root
}

// RecipeQEMU are QEMU hints copied to the manifest.
type RecipeQEMU struct {
	MemoryMiB int    `yaml:"memoryMiB,omitempty" json:"memoryMiB,omitempty" jsonschema:"minimum=0"`
	CPUs      int    `yaml:"cpus,omitempty" json:"cpus,omitempty" jsonschema:"minimum=0"`
	Machine   string `yaml:"machine,omitempty" json:"machine,omitempty"`
	// CPU is QEMU's -cpu model under TCG (default qemu64,+rdrand: the
	// guest seeds its random number generator from RDRAND at once instead
	// of waiting about a second for entropy).
	CPU       string   `yaml:"cpu,omitempty" json:"cpu,omitempty"`
	NICModel  string   `yaml:"nicModel,omitempty" json:"nicModel,omitempty"`
	DiskBus   string   `yaml:"diskBus,omitempty" json:"diskBus,omitempty" jsonschema:"enum=virtio,enum=ide,enum=scsi"`
	ExtraArgs []string `yaml:"extraArgs,omitempty" json:"extraArgs,omitempty"`
}

// RecipeReadiness overrides the readiness checks.
type RecipeReadiness struct {
	// SerialRegex matches a console line printed once the guest is up.
	// Default: the agent's marker (initramfs, debootstrap); for disk with
	// disk.cloudInit the seed's line at the end of cloud-init's first boot,
	// which reaches the serial port when the image's kernel console is
	// there (console=ttyS0, as in cloud images); else none.
	SerialRegex string `yaml:"serialRegex,omitempty" json:"serialRegex,omitempty"`
	SSHPorts    []int  `yaml:"sshPorts,omitempty" json:"sshPorts,omitempty"`
	TCPPorts    []int  `yaml:"tcpPorts,omitempty" json:"tcpPorts,omitempty"`
	BootSeconds int    `yaml:"bootSeconds,omitempty" json:"bootSeconds,omitempty" jsonschema:"minimum=0"`
}

// RecipeError is a problem in a recipe file, located at Line:Col (1-based;
// 0 when unknown). Its text is `PATH:LINE:COL: FIELD: MESSAGE`.
type RecipeError struct {
	Path      string
	Line, Col int
	Field     string // e.g. "users[0].name"; empty for syntax errors
	Msg       string
	// Warning marks a problem that does not stop the parse (see
	// [Recipe.Warnings]); its text has "warning: " before FIELD.
	Warning bool
	// Err is the underlying error, if any (errors.Is/As see through).
	Err error
}

// Unwrap returns the underlying error.
func (e *RecipeError) Unwrap() error { return e.Err }

func (e *RecipeError) Error() string {
	return strictyaml.Format(e.Path, strictyaml.Position{Line: e.Line, Column: e.Col}, e.Warning, e.Field, e.Msg)
}

// LoadRecipe reads a recipe from a directory (its image.yaml) or a file.
func LoadRecipe(path string) (*Recipe, error) {
	if st, err := os.Stat(path); err == nil && st.IsDir() {
		path = filepath.Join(path, RecipeFile)
	}
	raw, tooLarge, err := strictyaml.ReadFile(path, recipeOptions())
	if err != nil {
		return nil, fmt.Errorf("imagebuild: recipe: %w", err)
	}
	if tooLarge != nil {
		return nil, &RecipeError{Path: path, Msg: tooLarge.Message}
	}
	r, err := ParseRecipe(path, raw)
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	r.Path, r.Dir = abs, filepath.Dir(abs)
	return r, nil
}

// recipeOptions decode recipes strictly: an unknown or duplicate key is an
// error.
func recipeOptions() strictyaml.Options {
	return strictyaml.Options{Document: "an image recipe", Strict: true}
}

// ParseRecipe strictly decodes a recipe: every YAML syntax error, wrong
// type, unknown key (with a "did you mean"), duplicate key and alias bomb is
// reported in one pass, each a *[RecipeError] naming path:line:col and the
// field, joined with errors.Join; an input over 1 MiB is refused unread.
// It does not validate values (see [Recipe.Resolve]).
func ParseRecipe(path string, raw []byte) (*Recipe, error) {
	r := &Recipe{Path: path}
	res := strictyaml.Unmarshal(raw, r, recipeOptions())
	var errs []error
	for _, p := range res.Problems {
		re := &RecipeError{Path: path, Line: p.Pos.Line, Col: p.Pos.Column, Field: p.Field, Msg: p.Message, Warning: p.Warning}
		if p.Warning {
			r.Warnings = append(r.Warnings, re)
		} else {
			errs = append(errs, re)
		}
	}
	if root := res.Root; root != nil && len(errs) == 0 && isEmpty(root) {
		errs = append(errs, &RecipeError{Path: path, Line: root.Line, Col: root.Column,
			Msg: "empty recipe: want a mapping with at least slug and kind"})
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	r.pos = res.Positions
	return r, nil
}

// isEmpty reports whether a recipe's root node says nothing: no document,
// an empty mapping or null.
func isEmpty(root *yaml.Node) bool {
	return (root.Kind == yaml.MappingNode && len(root.Content) == 0) ||
		(root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null")
}

// errAt makes a RecipeError for field at its recorded position, or at
// the nearest enclosing field written in the file.
func (r *Recipe) errAt(field, format string, a ...any) error {
	p := r.pos.At(field)
	re := &RecipeError{Path: r.Path, Line: p.Line, Col: p.Column, Field: field, Msg: fmt.Sprintf(format, a...)}
	for _, v := range a {
		if err, ok := v.(error); ok {
			re.Err = err
			break
		}
	}
	return re
}
