package kubeplan_test

import (
	"fmt"
	"log"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/wiring"
)

// Render a lesson instance as Kubernetes objects: data first, to print
// (WriteYAML) or to apply (Applier.Apply).
func ExampleRender() {
	l, err := lessonmeta.Load("../examples/lessons/linux-triangle", lessonmeta.Options{})
	if err != nil {
		log.Fatal(err)
	}
	m, err := endpoint.Build(l, nil)
	if err != nil {
		log.Fatal(err)
	}
	p, err := wiring.NewPlan(m, wiring.Options{Instance: "lab1"})
	if err != nil {
		log.Fatal(err)
	}
	digest := "@sha256:1f1f3c8c1f1f3c8c1f1f3c8c1f1f3c8c1f1f3c8c1f1f3c8c1f1f3c8c1f1f3c8c"
	objs, err := kubeplan.Render(m, p, kubeplan.Options{
		Images:      map[string]kubeplan.Image{"tiny": {Ref: "registry.example/endpointkit/tiny" + digest, Ports: []int{22}}},
		LessonImage: "registry.example/endpointkit/lesson-linux-triangle" + digest,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(objs.Namespace.Name, objs.Namespace.Labels[kubeplan.LabelStage])
	for _, pod := range objs.Pods {
		fmt.Println(pod.Name, pod.Annotations[kubeplan.NetworksAnnotation])
	}
	fmt.Println(kubeplan.BridgeName("lab1", 0, -1))
	// Output:
	// ek-lab1 0
	// r1 [{"name":"link0-r1-r2","interface":"eth1","ips":["10.12.0.2/24"]},{"name":"link2-r1-r3","interface":"eth2","ips":["10.13.0.2/24"]}]
	// r2 [{"name":"link0-r1-r2","interface":"eth1","ips":["10.12.0.3/24"]},{"name":"link1-r2-r3","interface":"eth2","ips":["10.23.0.2/24"]}]
	// r3 [{"name":"link1-r2-r3","interface":"eth1","ips":["10.23.0.3/24"]},{"name":"link2-r1-r3","interface":"eth2","ips":["10.13.0.3/24"]}]
	// ek637a8690l0
}
