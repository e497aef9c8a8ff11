package qemulaunch_test

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Plan computes the QEMU command line without touching the system.
func ExampleConfig_Plan() {
	im := &vmimage.Image{Dir: "/image", Manifest: vmimage.Manifest{
		Slug: "tiny", Kernel: "vmlinux", Initrd: "initramfs.cpio", Cmdline: "console=ttyS0",
	}}
	p, err := qemulaunch.Config{
		Name: "r1", Image: im, Accel: qemulaunch.AccelTCG, LessonDir: "/lesson",
		Forwards:   []qemulaunch.Forward{{GuestPort: 22}, {GuestPort: 830}},
		Management: qemulaunch.Management{Address: netip.MustParseAddr("10.10.0.5")},
		Interfaces: []qemulaunch.Interface{{Name: "eth1", MTU: 1500}},
	}.Plan()
	if err != nil {
		fmt.Println(err)
		return
	}
	for i, a := range p.Args {
		if strings.HasPrefix(a, "-netdev") || strings.HasPrefix(a, "-append") {
			fmt.Println(a, p.Args[i+1])
		}
	}
	fmt.Println("state:", p.Dir, "stitch:", p.Stitch, "TAP:", p.Interfaces[0].TAP)
	// Output:
	// -append console=ttyS0 endpointkit.hostname=r1
	// -netdev user,id=net0,hostfwd=tcp:10.10.0.5:22-:22,hostfwd=tcp:10.10.0.5:830-:830
	// -netdev tap,id=hostnet1,ifname=tap1,script=no,downscript=no
	// state: /run/endpointkit/r1 stitch: mirred TAP: tap1
}

// ParsePorts reads the --forward syntax.
func ExampleParsePorts() {
	fs, _ := qemulaunch.ParsePorts("22,830,161/udp,8022:22")
	for _, f := range fs {
		fmt.Println(f)
	}
	// Output:
	// tcp:22->22
	// tcp:830->830
	// udp:161->161
	// tcp:8022->22
}

// Start, wait until ready, stop: what `endpoint run` does inside a
// container (needs root, QEMU and an image, so it does not run here).
func ExampleStart() {
	ctx := context.Background()
	im, err := vmimage.Load("/image")
	if err != nil {
		fmt.Println(err)
		return
	}
	vm, err := qemulaunch.Start(ctx, qemulaunch.Config{
		Name: "r1", Image: im, LessonDir: "/antidote",
		Forwards:       []qemulaunch.Forward{{GuestPort: 22}},
		DataInterfaces: 2, // wait for eth1 and eth2
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := vm.Ready(ctx); err != nil {
		fmt.Println(err, string(vm.Console().Tail(2000)))
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	vm.Stop(stopCtx)
	ex, _ := vm.Wait(ctx)
	fmt.Println("QEMU ended:", ex)
}
