// Package lessonjson holds the versioned JSON documents the lesson command
// prints with --json — `lesson validate`, `lesson plan` and `lesson
// status` — as Go types, so a program can decode them with the same types
// the command encodes them with (docs/lesson-json.md describes every
// field).
//
// Every document carries "version": [Version]. Within a version fields are
// only added, never renamed, removed or given another meaning; a change of
// meaning gets a new version number.
package lessonjson

import (
	"net/netip"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
)

// Version is the version of every document this package describes.
const Version = 1

// Status is the document of `lesson status --json`.
type Status struct {
	Version   int                     `json:"version"` // 1
	Instances []*endpointkit.Instance `json:"instances"`
}

// LinkChange is the document of `lesson link add|del --json`: the link
// added (Added), or the two ends of the link removed (Removed).
type LinkChange struct {
	Version  int                    `json:"version"` // 1
	Instance string                 `json:"instance"`
	Added    *endpointkit.AddedLink `json:"added,omitempty"`
	Removed  []endpointkit.LinkEnd  `json:"removed,omitempty"`
}

// Validation is the document of `lesson validate --json`.
type Validation struct {
	Version int      `json:"version"` // 1
	OK      bool     `json:"ok"`      // no target has an error
	Targets []Target `json:"targets"`
}

// Target is the validation of one PATH argument.
type Target struct {
	Path     string    `json:"path"`
	Kind     string    `json:"kind"` // "lesson" or "curriculum"
	OK       bool      `json:"ok"`
	Lessons  []string  `json:"lessons"` // slugs of the valid lessons
	Errors   int       `json:"errors"`
	Warnings int       `json:"warnings"`
	Problems []Problem `json:"problems"`
}

// Problem is one problem found in a lesson file.
type Problem struct {
	File     string `json:"file"`
	Line     int    `json:"line"`
	Column   int    `json:"column"`
	Field    string `json:"field,omitempty"`
	Severity string `json:"severity"` // "error" or "warning"
	Code     string `json:"code"`     // category: invalid, missing, unknown-key, …
	Message  string `json:"message"`
}

// ProblemOf is the document form of a lessonmeta problem.
func ProblemOf(p *lessonmeta.Problem) Problem {
	return Problem{File: p.File, Line: p.Pos.Line, Column: p.Pos.Column, Field: p.Field,
		Severity: p.Severity.String(), Code: p.Code(), Message: p.Message}
}

// String is the problem as lessonmeta writes it: FILE:LINE:COL: FIELD: MESSAGE.
func (p Problem) String() string {
	prob := lessonmeta.Problem{File: p.File, Pos: lessonmeta.Position{Line: p.Line, Column: p.Column}, Field: p.Field, Message: p.Message}
	if p.Severity == "warning" {
		prob.Severity = lessonmeta.SeverityWarning
	}
	return prob.Error()
}

// Plans is the document of `lesson plan --json`.
type Plans struct {
	Version int    `json:"version"` // 1
	Plans   []Plan `json:"plans"`
}

// Plan is the endpoint model of one lesson. Passwords are left out.
type Plan struct {
	Lesson    string         `json:"lesson"`
	Dir       string         `json:"dir"`
	Stages    int            `json:"stages"`
	Endpoints []PlanEndpoint `json:"endpoints"`
	Links     []PlanLink     `json:"links"`
	Warnings  []string       `json:"warnings"`
}

// PlanEndpoint is one endpoint of a plan (an endpoint.Endpoint).
type PlanEndpoint struct {
	Name             string             `json:"name"`
	Index            int                `json:"index"`
	Image            string             `json:"image"`
	ImageKnown       bool               `json:"imageKnown"`
	Flavor           string             `json:"flavor"`
	SSHUser          string             `json:"sshUser"`
	ConfigUser       string             `json:"configUser"`
	EnableForwarding bool               `json:"enableForwarding"`
	Ports            []int              `json:"ports"`
	Presentations    []PlanPresentation `json:"presentations"`
	ManagementMAC    string             `json:"managementMac"`
	Interfaces       []PlanInterface    `json:"interfaces"`
	Stages           []PlanStage        `json:"stages"`
}

// PlanPresentation is one presentation of an endpoint.
type PlanPresentation struct {
	Name string `json:"name"`
	Port int    `json:"port"`
	Type string `json:"type"`
}

// PlanInterface is one data-plane interface of an endpoint.
type PlanInterface struct {
	Name          string `json:"name"`
	GuestName     string `json:"guestName"`
	MAC           string `json:"mac"`
	MTU           int    `json:"mtu"`
	Link          int    `json:"link"`
	Peer          string `json:"peer"`
	PeerInterface string `json:"peerInterface"`
	Address       string `json:"address"` // CIDR, "" when none is planned
}

// PlanStage is an endpoint's configuration at one stage.
type PlanStage struct {
	Stage  int    `json:"stage"`
	Method string `json:"method"` // "" when not configured
	File   string `json:"file"`   // absolute
	Driver string `json:"driver"` // NAPALM driver, else ""
}

// PlanLink is one link of a plan.
type PlanLink struct {
	Index    int         `json:"index"`
	A        PlanLinkEnd `json:"a"`
	B        PlanLinkEnd `json:"b"`
	Subnet   string      `json:"subnet"`
	Explicit bool        `json:"explicit"` // the lesson gave the subnet; addresses are planned
	MTU      int         `json:"mtu"`
}

// PlanLinkEnd is one end of a link.
type PlanLinkEnd struct {
	Endpoint  string `json:"endpoint"`
	Interface string `json:"interface"`
}

func prefixString(p netip.Prefix) string {
	if !p.IsValid() {
		return ""
	}
	return p.String()
}

// PlanOf is the document form of a lesson's endpoint model.
func PlanOf(m *endpoint.Model) Plan {
	p := Plan{Lesson: m.Lesson, Dir: m.Dir, Stages: m.StageCount, Endpoints: []PlanEndpoint{}, Links: []PlanLink{}, Warnings: m.Warnings}
	if p.Warnings == nil {
		p.Warnings = []string{}
	}
	for _, e := range m.Endpoints {
		ej := PlanEndpoint{Name: e.Name, Index: e.Index, Image: e.Image, ImageKnown: e.ImageKnown, Flavor: e.Flavor,
			SSHUser: e.Credentials.SSHUser, ConfigUser: e.Credentials.ConfigUser, EnableForwarding: e.EnableForwarding,
			Ports: append([]int{}, e.Ports...), Presentations: []PlanPresentation{}, ManagementMAC: e.ManagementMAC.String(),
			Interfaces: []PlanInterface{}, Stages: []PlanStage{}}
		for _, pr := range e.Presentations {
			ej.Presentations = append(ej.Presentations, PlanPresentation{Name: pr.Name, Port: pr.Port, Type: string(pr.Type)})
		}
		for _, i := range e.Interfaces {
			ej.Interfaces = append(ej.Interfaces, PlanInterface{Name: i.Name, GuestName: i.GuestName, MAC: i.MAC.String(), MTU: i.MTU,
				Link: i.Link, Peer: i.Peer, PeerInterface: i.PeerInterface, Address: prefixString(i.Address)})
		}
		for _, s := range e.Stages {
			ej.Stages = append(ej.Stages, PlanStage{Stage: s.Stage, Method: string(s.Method), File: s.File, Driver: s.Driver})
		}
		p.Endpoints = append(p.Endpoints, ej)
	}
	for _, l := range m.Links {
		p.Links = append(p.Links, PlanLink{Index: l.Index, A: PlanLinkEnd(l.A), B: PlanLinkEnd(l.B),
			Subnet: prefixString(l.Subnet), Explicit: l.Explicit, MTU: l.MTU})
	}
	return p
}
