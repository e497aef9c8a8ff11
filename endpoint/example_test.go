package endpoint_test

import (
	"fmt"
	"os"
	"testing/fstest"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

const twoHosts = `name: Two hosts
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
    presentations: [{name: cli, port: 22, type: ssh}, {name: web, port: 80, type: http}]
connections:
  - {a: h1, b: h2, subnet: 10.0.0.0/24}
stages:
  - {guideType: markdown}
`

// catalog is an image source over a map; lessonmeta.ImageDirs reads real
// image.meta.yaml files the same way.
type catalog map[string]*lessonmeta.Image

func (c catalog) Image(slug string) (*lessonmeta.Image, error) {
	if im, ok := c[slug]; ok {
		return im, nil
	}
	return nil, fmt.Errorf("%w: %s", lessonmeta.ErrNoImage, slug)
}

// Build turns a validated lesson into the endpoint plan: interfaces,
// deterministic MACs, planned addresses and per-stage configuration.
func ExampleBuild() {
	raw, _ := lessonmeta.Parse("/lessons/two-hosts/lesson.meta.yaml", []byte(twoHosts), lessonmeta.Options{})
	l, err := lessonmeta.Validate(raw, fstest.MapFS{
		"stage0/guide.md":      {Data: []byte("# Stage 0\n")},
		"stage0/configs/h1.sh": {Data: []byte("sudo ip addr add 10.0.0.2/24 dev eth1\n")},
	}, lessonmeta.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	images := catalog{"utility": {Slug: "utility", Flavor: lessonmeta.FlavorUntrusted,
		SSHUser: "antidote", SSHPassword: "antidotepassword", ConfigUser: "antidote", ConfigPassword: "antidotepassword"}}
	m, err := endpoint.Build(l, images)
	if err != nil {
		fmt.Println(err)
		return
	}
	h2 := m.Endpoint("h2")
	fmt.Println(h2.Interfaces[0].Name, h2.Interfaces[0].Address, h2.Ports)
	if err := m.WriteTable(os.Stdout); err != nil {
		fmt.Println(err)
	}
	// Output:
	// eth1 10.0.0.3/24 [22 80]
	// lesson two-hosts: 2 endpoints, 1 links, 1 stages (/lessons/two-hosts)
	//
	// ENDPOINT  IMAGE    FLAVOR     SSH USER  PORTS  MGMT MAC
	// h1        utility  untrusted  antidote  22     42:48:f9:d6:f8:3a
	// h2        utility  untrusted  antidote  22,80  1a:5e:b3:a8:74:9f
	//
	// ENDPOINT  INTERFACE  GUEST  MAC                MTU   ADDRESS      PEER
	// h1        eth1       eth1   e6:18:a3:59:85:d1  1500  10.0.0.2/24  h2 eth1
	// h2        eth1       eth1   f6:5f:df:6e:36:0f  1500  10.0.0.3/24  h1 eth1
	//
	// LINK  A        B        SUBNET       MTU
	// 0     h1.eth1  h2.eth1  10.0.0.0/24  1500
	//
	// STAGE  ENDPOINT  METHOD  FILE
	// 0      h1        ssh     stage0/configs/h1.sh
}
