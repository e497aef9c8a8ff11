// Command plan shows what endpointkit would build for a lesson, without
// starting anything: the endpoint model (package endpoint: images, ports,
// interfaces, MACs, addresses, stage configs) and its wiring plan (package
// wiring: namespaces, links).
//
//	go run ./examples/plan examples/lessons/frr-ospf [IMAGES_DIR]
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/wiring"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "plan:", err)
		os.Exit(1)
	}
}

// run plans the lesson in args[0]; args[1], when given, is a directory of
// image directories (<dir>/<slug>/image.meta.yaml) for credentials and
// guest interface names.
func run(args []string, w io.Writer) error {
	if len(args) < 1 || len(args) > 2 {
		return fmt.Errorf("usage: plan LESSON_DIR [IMAGES_DIR]")
	}
	l, err := lessonmeta.Load(args[0], lessonmeta.Options{})
	if err != nil {
		return err
	}
	var images endpoint.Images
	if len(args) == 2 {
		images = lessonmeta.ImageDirs{args[1]}
	}
	m, err := endpoint.Build(l, images) // pure: reads only image metafiles
	if err != nil {
		return err
	}
	if err := m.WriteTable(w); err != nil {
		return err
	}
	p, err := wiring.NewPlan(m, wiring.Options{Instance: l.Slug}) // pure too
	if err != nil {
		return err
	}
	fmt.Fprintln(w)
	return p.WriteText(w)
}
