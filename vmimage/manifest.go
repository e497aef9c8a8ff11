// Package vmimage defines a built VM image directory and its manifest: the
// contract between imagebuild (which writes it) and qemulaunch, configure and
// the lesson orchestration (which read it).
//
// An image directory holds manifest.json (this package's [Manifest]), an
// Antidote-compatible image.meta.yaml, and the artefacts the manifest names
// by paths relative to the directory (kernel, initrd, disk). Readers must
// reject a manifest whose Version they do not know ([ErrVersion]).
//
// The manifest also records the image's NIC layout ([NICLayout],
// [Manifest.Layout]): where each NIC sits on the guest's PCI bus and the
// name the guest gives it. Launchers place NICs there; the image makes the
// names true.
package vmimage

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ManifestFile is the manifest's file name inside an image directory.
const ManifestFile = "manifest.json"

// Version is the manifest format version this package reads and writes.
const Version = 1

// ErrVersion is returned by [Load] for a manifest of an unknown version.
var ErrVersion = errors.New("vmimage: unsupported manifest version")

// Kind says how an image was built.
type Kind string

// Image kinds.
const (
	KindInitramfs   Kind = "initramfs"   // kernel + initramfs, no disk (the tiny endpoint)
	KindDebootstrap Kind = "debootstrap" // full Debian: kernel + initrd + qcow2 root disk
	KindDisk        Kind = "disk"        // a vendor disk, booted by its own firmware/bootloader
	KindISO         Kind = "iso"         // installed from an installer ISO, booted by its own bootloader
)

// KernelFormat says how the kernel is booted.
type KernelFormat string

// Kernel formats.
const (
	KernelPVH     KernelFormat = "pvh-vmlinux" // uncompressed ELF vmlinux, PVH direct boot
	KernelBzImage KernelFormat = "bzimage"     // compressed bzImage via the linux boot protocol
)

// Manifest describes a built image. Paths are relative to the image directory.
type Manifest struct {
	// Version is the manifest format ([Version]); Write sets it.
	Version int `json:"version"`
	// Slug is the image's name (Antidote's image slug).
	Slug string `json:"slug"`
	// Description is one human line.
	Description string `json:"description,omitempty"`
	// Kind says which builder made the image.
	Kind Kind `json:"kind"`

	// Direct kernel boot (empty Kernel: boot the disk's own bootloader).
	// Kernel is the kernel file; KernelFormat how to boot it (a PVH
	// vmlinux goes to QEMU's -kernel as is); Initrd the initramfs
	// (-initrd). Cmdline is the complete kernel command line except
	// "endpointkit.hostname=NAME", which the launcher appends.
	Kernel       string       `json:"kernel,omitempty"`
	KernelFormat KernelFormat `json:"kernelFormat,omitempty"`
	Initrd       string       `json:"initrd,omitempty"`
	Cmdline      string       `json:"cmdline,omitempty"`
	// KernelVersion is the kernel's release (uname -r), informational.
	KernelVersion string `json:"kernelVersion,omitempty"`

	// Disk is the base disk image, never written by a launcher (it makes a
	// per-instance overlay). DiskFormat is qemu-img's name for its format.
	Disk       string `json:"disk,omitempty"`
	DiskFormat string `json:"diskFormat,omitempty"`
	// Seed is a cloud-init NoCloud seed (ISO 9660, volume label "cidata")
	// for images that run cloud-init; a launcher attaches it read-only as
	// a second drive. Empty: none.
	Seed string `json:"seed,omitempty"`

	// QEMU are hints for the command line; Readiness how to know the
	// guest is up; Users the accounts (as in image.meta.yaml); APIs the
	// guest ports of the management services.
	QEMU      QEMUHints   `json:"qemu"`
	Readiness Readiness   `json:"readiness"`
	Users     Credentials `json:"users"`
	APIs      APIs        `json:"apis"`

	// NetworkInterfaces are the guest's names for its data-plane NICs, in
	// NIC order (the first is the guest's name for the container's eth1).
	// Empty means eth1, eth2, … . The management NIC is never listed.
	NetworkInterfaces []string `json:"networkInterfaces,omitempty"`
	// NICs is where the NICs sit on the guest's PCI bus and what the
	// management NIC is called; zero: the default layout (see [Layout],
	// which also brings in NetworkInterfaces and QEMU.NICModel).
	NICs NICLayout `json:"nics,omitzero"`

	// Share9P says the guest mounts the 9p share tagged "antidote" (the
	// lesson directory) at /antidote.
	Share9P bool `json:"share9p,omitempty"`

	// HostKeys are the guest's SSH host keys, generated at build time: a
	// launcher or configurator can pin them instead of trusting on first
	// use.
	HostKeys []HostKey `json:"hostKeys,omitempty"`
	// Identity, when IdentityFWCfg, says the image has no host keys of its
	// own: each instance gets its hostname and host keys from the
	// launcher through fw_cfg (see [Identity]), and HostKeys is empty.
	Identity string `json:"identity,omitempty"`

	// Tests are the image's self-tests (`imagebuild test` runs them): each
	// a script the SSH user runs over SSH after boot, expected to exit 0.
	Tests []SelfTest `json:"tests,omitempty"`

	// BuildKey identifies the recipe and inputs the image was built from
	// (hex sha256); a rebuild with the same key is a cache hit. Readers
	// need not look at it.
	BuildKey string `json:"buildKey,omitempty"`

	// Artifacts maps each file of the image (relative path) to its sha256,
	// hex encoded.
	Artifacts map[string]string `json:"artifacts,omitempty"`
}

// QEMUHints are the image's preferred QEMU settings; zero values mean the
// launcher's defaults.
type QEMUHints struct {
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	CPUs      int    `json:"cpus,omitempty"`
	Machine   string `json:"machine,omitempty"` // e.g. "q35", "pc"
	// CPU is the -cpu model when QEMU emulates (TCG); with KVM launchers
	// pass the host's CPU. Empty: QEMU's default.
	CPU       string   `json:"cpu,omitempty"`
	NICModel  string   `json:"nicModel,omitempty"` // e.g. "virtio-net-pci", "e1000"
	DiskBus   string   `json:"diskBus,omitempty"`  // "virtio" (default), "ide", "scsi"
	ExtraArgs []string `json:"extraArgs,omitempty"`
}

// Readiness says how a launcher knows the guest is up.
type Readiness struct {
	// SerialRegex matches a line on the serial console printed when the
	// guest has booted (for example the tiny agent's ready marker).
	SerialRegex string `json:"serialRegex,omitempty"`
	// SSHPorts are guest ports where a real SSH handshake must succeed.
	SSHPorts []int `json:"sshPorts,omitempty"`
	// TCPPorts are guest ports that must accept a connection.
	TCPPorts []int `json:"tcpPorts,omitempty"`
	// BootSeconds is the expected boot time under KVM; launchers scale it
	// for TCG. Zero means the launcher's default.
	BootSeconds int `json:"bootSeconds,omitempty"`
}

// Credentials are the accounts of the image, as in Antidote's image.meta.yaml.
type Credentials struct {
	SSHUser        string `json:"sshUser"`
	SSHPassword    string `json:"sshPassword"`
	ConfigUser     string `json:"configUser"`
	ConfigPassword string `json:"configPassword"`
}

// APIs are the management services the guest offers (guest ports).
type APIs struct {
	SSH     int   `json:"ssh,omitempty"`     // usually 22
	NETCONF int   `json:"netconf,omitempty"` // usually 830
	HTTP    []int `json:"http,omitempty"`
}

// HostKey is one SSH host key of the guest, generated at build time.
type HostKey struct {
	Type        string `json:"type"`        // e.g. "ssh-ed25519"
	Fingerprint string `json:"fingerprint"` // "SHA256:…" as ssh.FingerprintSHA256 prints it
	PublicKey   string `json:"publicKey"`   // authorized_keys format
}

// SelfTest is one self-test of an image.
type SelfTest struct {
	Name string `json:"name"`
	Run  string `json:"run"` // a script for sh -ec
}

// Image is a loaded image directory.
type Image struct {
	Dir      string
	Manifest Manifest
}

// Path returns the absolute path of a file named (relatively) by the manifest.
func (im *Image) Path(rel string) string {
	if rel == "" {
		return ""
	}
	return filepath.Join(im.Dir, rel)
}

// Load reads dir/manifest.json. It checks the version, not the artefacts.
func Load(dir string) (*Image, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(filepath.Join(abs, ManifestFile))
	if err != nil {
		return nil, fmt.Errorf("vmimage: %w", err)
	}
	var m Manifest
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("vmimage: %s: %w", filepath.Join(abs, ManifestFile), err)
	}
	if m.Version != Version {
		return nil, fmt.Errorf("%w: %s says version %d, this build reads %d", ErrVersion, filepath.Join(abs, ManifestFile), m.Version, Version)
	}
	return &Image{Dir: abs, Manifest: m}, nil
}

// Write stores m as dir/manifest.json (setting Version).
func Write(dir string, m Manifest) error {
	m.Version = Version
	raw, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, ManifestFile), append(raw, '\n'), 0o644)
}

// FileSHA256 returns the hex sha256 of a file, as recorded in
// Manifest.Artifacts.
func FileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}
