package lessonmeta_test

import (
	"errors"
	"fmt"
	"testing/fstest"

	"github.com/endpointkit/endpointkit/lessonmeta"
)

const exampleLesson = `name: Two hosts
slug: two-hosts
category: fundamentals
tier: local
description: Two Linux hosts on one cable.
shortDescription: Two hosts
endpoints:
  - name: h1
    image: utility
    configurationType: ssh
    presentations: [{name: cli, port: 22, type: ssh}]
  - name: h2
    image: utility
    presentations: [{name: cli, port: 22, type: ssh}]
connections:
  - {a: h1, b: h2, subnet: 10.0.0.0/24}
stages:
  - {description: Address h1, guideType: markdown}
`

// Parse is the first layer: what the file says, with positions kept.
func ExampleParse() {
	raw, err := lessonmeta.Parse("two-hosts/lesson.meta.yaml", []byte(exampleLesson), lessonmeta.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(raw.Slug, len(raw.Endpoints), raw.Connections[0].Subnet)
	// Output: two-hosts 2 10.0.0.0/24
}

// Validate is the second layer: every rule, defaults, and (given the lesson
// directory) guides and config files resolved per stage.
func ExampleValidate() {
	raw, _ := lessonmeta.Parse("/lessons/two-hosts/lesson.meta.yaml", []byte(exampleLesson), lessonmeta.Options{})
	dir := fstest.MapFS{
		"stage0/guide.md":      {Data: []byte("# Address h1\n")},
		"stage0/configs/h1.sh": {Data: []byte("sudo ip addr add 10.0.0.2/24 dev eth1\n")},
	}
	l, err := lessonmeta.Validate(raw, dir, lessonmeta.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h1 := l.Endpoint("h1")
	fmt.Println(h1.ConfigurationType, h1.Configs[0].Path)
	fmt.Println(l.Connections[0].Subnet, l.Connections[0].SubnetExplicit)
	// Output:
	// ssh /lessons/two-hosts/stage0/configs/h1.sh
	// 10.0.0.0/24 true
}

// Every problem of a file comes back at once, each with its position, field
// and category.
func ExampleValidate_problems() {
	bad := `name: Two hosts
slug: Two_Hosts
category: fundamentals
tier: local
description: d
shortDescription: s
endpoints:
  - name: h1
    image: utility
    presentations: [{name: cli, port: 70000, type: ssh}]
connections:
  - {a: h1, b: h3}
stages:
  - {guideType: markdown, guide: intro.md}
`
	raw, err := lessonmeta.Parse("lesson.meta.yaml", []byte(bad), lessonmeta.Options{})
	if raw != nil {
		_, err = lessonmeta.Validate(raw, nil, lessonmeta.Options{})
	}
	for _, p := range lessonmeta.ProblemsOf(err) {
		fmt.Println(p)
	}
	fmt.Println(errors.Is(err, lessonmeta.ErrReference))
	// Output:
	// lesson.meta.yaml:2:7: slug: "Two_Hosts" may hold only lower-case letters and hyphens (try "two-hosts")
	// lesson.meta.yaml:10:39: endpoints[0].presentations[0].port: 70000 is not a port number (1-65535)
	// lesson.meta.yaml:12:16: connections[0].b: no endpoint is named "h3"; did you mean "h1"?
	// lesson.meta.yaml:14:27: warning: stages[0].guide: unknown key (known here: description, guideType, stageVideo)
	// true
}

// Load reads a lesson directory and checks it on disk.
func ExampleLoad() {
	l, err := lessonmeta.Load("../examples/lessons/linux-triangle", lessonmeta.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(l.Slug, len(l.Stages), "stages")
	for _, ep := range l.Endpoints {
		fmt.Println(ep.Name, ep.Image, ep.ConfigurationType, ep.Configs[1].Rel)
	}
	// Output:
	// linux-triangle 2 stages
	// r1 tiny ssh stage1/configs/r1.sh
	// r2 tiny ssh stage1/configs/r2.sh
	// r3 tiny ssh stage1/configs/r3.sh
}

// Migrate converts the older Syringe formats and says what it did.
func ExampleMigrate() {
	old := `lessonName: Intro to BGP
lessonId: 7
category: tools
tier: prod
description: BGP between two routers.
devices:
  - name: vqfx1
    image: antidotelabs/vqfx:snap1
stages:
  - id: 1
    description: Sessions
`
	m, err := lessonmeta.Migrate("syringe.yaml", []byte(old))
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.From)
	fmt.Println(m.Lesson.Slug, m.Lesson.Endpoints[0].Image, m.Lesson.Endpoints[0].ConfigurationType)
	for _, r := range m.Renames {
		fmt.Println(r.From, "->", r.To)
	}
	// Output:
	// Syringe v0.1.4-v0.3 (syringe.yaml)
	// intro-to-bgp vqfx-snap1 napalm
	// stage1/guide.md -> stage0/guide.md
	// stage1/configs/vqfx1.txt -> stage0/configs/vqfx1-junos.txt
}
