package vmimage_test

import (
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/endpointkit/endpointkit/vmimage"
)

// Write a manifest into an image directory and read it back, as a launcher
// does before it boots the image.
func ExampleLoad() {
	dir, err := os.MkdirTemp("", "image")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	err = vmimage.Write(dir, vmimage.Manifest{
		Slug: "tiny", Kind: vmimage.KindInitramfs,
		Kernel: "vmlinux", KernelFormat: vmimage.KernelPVH, Initrd: "initramfs.cpio",
		Cmdline:   "console=ttyS0 quiet",
		Readiness: vmimage.Readiness{SerialRegex: `endpointkit: ready\b`, SSHPorts: []int{22}},
		Users:     vmimage.Credentials{SSHUser: "antidote", SSHPassword: "antidotepassword"},
		APIs:      vmimage.APIs{SSH: 22},
	})
	if err != nil {
		log.Fatal(err)
	}
	im, err := vmimage.Load(dir)
	if err != nil {
		log.Fatal(err)
	}
	m := im.Manifest
	fmt.Println(m.Version, m.Slug, m.Kind, m.KernelFormat)
	fmt.Println(filepath.Base(im.Path(m.Kernel)), m.Readiness.SSHPorts, m.Users.SSHUser)
	// Output:
	// 1 tiny initramfs pvh-vmlinux
	// vmlinux [22] antidote
}
