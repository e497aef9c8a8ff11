package imagebuild_test

import (
	"context"
	"fmt"
	"log"

	"github.com/endpointkit/endpointkit/imagebuild"
)

// A recipe is decoded strictly and resolved: defaults filled, problems
// reported with file:line:col.
func ExampleParseRecipe() {
	r, err := imagebuild.ParseRecipe("image.yaml", []byte(`
slug: tiny
kind: initramfs
`))
	if err != nil {
		log.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		log.Fatal(err)
	}
	u := r.Users[0]
	fmt.Println(r.Slug, r.Kind, r.Kernel.Package, u.Name, u.Password, u.Groups, r.APIs.SSH.Port)

	_, err = imagebuild.ParseRecipe("image.yaml", []byte("slug: tiny\nkind: initramfs\nmemory: 256\n"))
	fmt.Println(err)
	// Output:
	// tiny initramfs linux-image-amd64 antidote antidotepassword [sudo] 22
	// image.yaml:3:1: memory: unknown key (known here: slug, description, kind, flavor, kernel, agent, suite, mirror, packages, services, diskSizeMiB, disk, iso, bake, users, apis, dhcp, files, steps, networkInterfaces, nics, tests, qemu, readiness)
}

// Build an image directory from a recipe directory (needs the Debian
// tools; debootstrap recipes need root).
func ExampleBuilder_Build() {
	r, err := imagebuild.LoadRecipe("examples/images/tiny")
	if err != nil {
		log.Fatal(err)
	}
	res, err := imagebuild.New(imagebuild.Options{}).Build(context.Background(), r, "out/tiny")
	if err != nil {
		log.Fatal(err)
	}
	m := res.Image.Manifest
	fmt.Println(m.Kernel, m.Initrd, m.Cmdline, m.Readiness.SerialRegex, m.HostKeys[0].Fingerprint)
}
