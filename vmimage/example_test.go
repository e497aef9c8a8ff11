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

// Place the NICs of an image laid out as NRE Labs' frr image: the
// management NIC and the data NICs are functions of PCI slot 3, and the
// guest names them after their addresses.
func ExampleManifest_Layout() {
	m := vmimage.Manifest{
		NICs: vmimage.NICLayout{Placement: vmimage.PlaceFunctions,
			Data: vmimage.PCIAddr{Slot: 3, Function: 1}, Management: vmimage.PCIAddr{Slot: 3}, ManagementName: "enp0s3f0"},
		NetworkInterfaces: []string{"enp0s3f1", "enp0s3f2"},
	}
	l := m.Layout()
	if err := l.Validate(); err != nil {
		log.Fatal(err)
	}
	fmt.Println(l)
	fmt.Println("holds", l.Capacity(), "data NICs")
	mg := l.ManagementNIC()
	fmt.Println(mg.Name, mg.QEMU())
	for i := 1; i <= 3; i++ {
		n, _ := l.DataNIC(i)
		fmt.Println(n.Name, n.QEMU(), "path", n.Addr.Sysfs())
	}
	// Output:
	// virtio-net-pci: management at 03.0 (enp0s3f0), data NICs at functions 1-7 of slot 3
	// holds 7 data NICs
	// enp0s3f0 addr=0x3,multifunction=on
	// enp0s3f1 addr=0x3.0x1 path 0000:00:03.1
	// enp0s3f2 addr=0x3.0x2 path 0000:00:03.2
	// eth3 addr=0x3.0x3 path 0000:00:03.3
}
