package cli

import (
	"context"
	"flag"
	"fmt"
	"net/netip"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

func planCommand() *Command {
	return &Command{
		Name:    "plan",
		Args:    "[--json] [--images DIR]... [--mtu N] PATH...",
		Summary: "show the endpoint model of lessons: images, ports, interfaces, MACs, addresses, stage configs",
		Help: `
Validates each lesson PATH (a lesson directory or its lesson.meta.yaml) and
prints the runtime model endpointkit derives from it: each endpoint's image
and credentials, ports, management MAC, data interfaces (eth1… in connection
order, with MAC, MTU and the address planned from the connection's subnet),
the links, and the configuration file of every stage.

Images are looked up as for validate; an image without metadata is a warning
and the plan still works. Nothing is started.`,
		Setup: func(fs *flag.FlagSet) func(context.Context, *Env, []string) error {
			asJSON := fs.Bool("json", false, "print one JSON document (version 1) to stdout")
			mtu := fs.Int("mtu", 0, "MTU of the data-plane links (default 1500)")
			var images stringList
			fs.Var(&images, "images", "a directory of image directories (`DIR`/<slug>/image.meta.yaml); repeatable")
			return func(ctx context.Context, env *Env, args []string) error {
				if len(args) == 0 {
					return fmt.Errorf("%w: give at least one lesson PATH", ErrUsage)
				}
				return runPlan(env, args, images, endpoint.Options{MTU: *mtu}, *asJSON)
			}
		},
	}
}

func runPlan(env *Env, paths, images []string, bopts endpoint.Options, asJSON bool) error {
	out := PlanOutput{Version: 1, Plans: []PlanJSON{}}
	failed := false
	for i, path := range paths {
		if lessonmeta.IsCurriculum(path) {
			failed = true
			fmt.Fprintf(env.Stderr, "%s: a curriculum; plan takes lesson directories (%s/lessons/...)\n", path, path)
			continue
		}
		catalog := imageCatalog(path, images)
		l, err := lessonmeta.Load(path, lessonmeta.Options{}) // Build warns about images
		if err != nil {
			failed = true
			reportLoadError(env, path, err)
			continue
		}
		for _, w := range l.Warnings {
			fmt.Fprintln(env.Stderr, w.Error())
		}
		m, err := bopts.Build(l, catalog)
		if err != nil {
			failed = true
			fmt.Fprintf(env.Stderr, "%s: %v\n", path, err)
			continue
		}
		if asJSON {
			out.Plans = append(out.Plans, planJSON(m))
			continue
		}
		if i > 0 {
			fmt.Fprintln(env.Stdout)
		}
		if err := m.WriteTable(env.Stdout); err != nil {
			return err
		}
	}
	if asJSON {
		if err := writeJSON(env.Stdout, out); err != nil {
			return err
		}
	}
	if failed {
		return errReported
	}
	return nil
}

// reportLoadError prints every problem of a failed load, or the error.
func reportLoadError(env *Env, path string, err error) {
	probs := lessonmeta.ProblemsOf(err)
	if len(probs) == 0 {
		fmt.Fprintf(env.Stderr, "%s: %s\n", path, describeLoadError(path, err))
		return
	}
	for _, p := range probs {
		fmt.Fprintln(env.Stderr, p.Error())
	}
}

// PlanOutput is the JSON document of `lesson plan --json`.
type PlanOutput struct {
	Version int        `json:"version"` // 1
	Plans   []PlanJSON `json:"plans"`
}

// PlanJSON is the endpoint model of one lesson. Passwords are left out.
type PlanJSON struct {
	Lesson    string         `json:"lesson"`
	Dir       string         `json:"dir"`
	Stages    int            `json:"stages"`
	Endpoints []EndpointJSON `json:"endpoints"`
	Links     []LinkJSON     `json:"links"`
	Warnings  []string       `json:"warnings"`
}

// EndpointJSON is one endpoint of a plan.
type EndpointJSON struct {
	Name             string             `json:"name"`
	Index            int                `json:"index"`
	Image            string             `json:"image"`
	ImageKnown       bool               `json:"imageKnown"`
	Flavor           string             `json:"flavor"`
	SSHUser          string             `json:"sshUser"`
	ConfigUser       string             `json:"configUser"`
	EnableForwarding bool               `json:"enableForwarding"`
	Ports            []int              `json:"ports"`
	Presentations    []PresentationJSON `json:"presentations"`
	ManagementMAC    string             `json:"managementMac"`
	Interfaces       []InterfaceJSON    `json:"interfaces"`
	Stages           []StageJSON        `json:"stages"`
}

// PresentationJSON is one presentation of an endpoint.
type PresentationJSON struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Type string `json:"type"`
}

// InterfaceJSON is one data-plane interface of an endpoint.
type InterfaceJSON struct {
	Name          string `json:"name"`
	GuestName     string `json:"guestName"`
	MAC           string `json:"mac"`
	MTU           int    `json:"mtu"`
	Link          int    `json:"link"`
	Peer          string `json:"peer"`
	PeerInterface string `json:"peerInterface"`
	Address       string `json:"address"` // CIDR, "" when none is planned
}

// StageJSON is an endpoint's configuration at one stage.
type StageJSON struct {
	Stage  int    `json:"stage"`
	Method string `json:"method"` // "" when not configured
	File   string `json:"file"`   // absolute
	Driver string `json:"driver"` // NAPALM driver, else ""
}

// LinkJSON is one link of a plan.
type LinkJSON struct {
	Index    int         `json:"index"`
	A        LinkEndJSON `json:"a"`
	B        LinkEndJSON `json:"b"`
	Subnet   string      `json:"subnet"`
	Explicit bool        `json:"explicit"` // the lesson gave the subnet; addresses are planned
	MTU      int         `json:"mtu"`
}

// LinkEndJSON is one end of a link.
type LinkEndJSON struct {
	Endpoint  string `json:"endpoint"`
	Interface string `json:"interface"`
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

func planJSON(m *endpoint.Model) PlanJSON {
	p := PlanJSON{Lesson: m.Lesson, Dir: m.Dir, Stages: m.StageCount, Endpoints: []EndpointJSON{}, Links: []LinkJSON{}, Warnings: m.Warnings}
	if p.Warnings == nil {
		p.Warnings = []string{}
	}
	for _, e := range m.Endpoints {
		ej := EndpointJSON{Name: e.Name, Index: e.Index, Image: e.Image, ImageKnown: e.ImageKnown, Flavor: e.Flavor,
			SSHUser: e.Credentials.SSHUser, ConfigUser: e.Credentials.ConfigUser, EnableForwarding: e.EnableForwarding,
			Ports: append([]int{}, e.Ports...), Presentations: []PresentationJSON{}, ManagementMAC: e.ManagementMAC.String(),
			Interfaces: []InterfaceJSON{}, Stages: []StageJSON{}}
		for _, pr := range e.Presentations {
			ej.Presentations = append(ej.Presentations, PresentationJSON{Name: pr.Name, Port: pr.Port, Type: string(pr.Type)})
		}
		for _, i := range e.Interfaces {
			ej.Interfaces = append(ej.Interfaces, InterfaceJSON{Name: i.Name, GuestName: i.GuestName, MAC: i.MAC.String(), MTU: i.MTU,
				Link: i.Link, Peer: i.Peer, PeerInterface: i.PeerInterface, Address: prefixString(i.Address)})
		}
		for _, s := range e.Stages {
			ej.Stages = append(ej.Stages, StageJSON{Stage: s.Stage, Method: string(s.Method), File: s.File, Driver: s.Driver})
		}
		p.Endpoints = append(p.Endpoints, ej)
	}
	for _, l := range m.Links {
		p.Links = append(p.Links, LinkJSON{Index: l.Index, A: LinkEndJSON(l.A), B: LinkEndJSON(l.B),
			Subnet: prefixString(l.Subnet), Explicit: l.Explicit, MTU: l.MTU})
	}
	return p
}
