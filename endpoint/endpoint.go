// Package endpoint is the runtime model of a lesson's endpoints: for each
// endpoint its image and credentials, the ports to expose, its data-plane
// interfaces (names, MACs, MTU, addresses) in a deterministic order, the links
// that cable endpoints together, and what configures it at each stage.
//
// The model is pure data derived from the validated lesson and image
// metafiles; nothing here touches the network or starts anything. The
// wiring, qemulaunch and configure packages, and the lesson orchestration,
// consume it.
package endpoint

import (
	"net"
	"net/netip"
)

// Model is every endpoint and link of one lesson.
type Model struct {
	Lesson    string     // lesson slug
	Dir       string     // absolute lesson directory
	Endpoints []Endpoint // in the lesson's endpoints order
	Links     []Link     // in the lesson's connections order

	// StageCount is the number of stages; every Endpoint.Stages has this
	// length.
	StageCount int
	// Warnings are things a launch will trip over that do not stop the
	// plan (an image without metadata, an image naming fewer interfaces
	// than the endpoint has).
	Warnings []string
}

// Endpoint is one endpoint of a lesson, ready to launch.
type Endpoint struct {
	Name  string // DNS label, unique in the lesson
	Index int    // position in the lesson's endpoints list

	Image      string // image slug
	ImageKnown bool   // an image.meta.yaml was found for Image
	Flavor     string // image flavor (trusted, untrusted, legacy); "" when unknown

	Credentials Credentials

	// Presentations as the lesson declares them.
	Presentations []Presentation
	// Ports are every guest port to expose: presentation ports then
	// additionalPorts, without duplicates, in that order.
	Ports []int

	// ManagementMAC is the MAC of the guest's management NIC (behind eth0).
	ManagementMAC net.HardwareAddr
	// Interfaces are the data-plane interfaces, eth1… in connection order.
	Interfaces []Interface

	// Stages holds the configuration for each stage, indexed by stage.
	Stages []StageConfig

	EnableForwarding bool // image asks for IP forwarding
}

// Credentials are the accounts used to reach and configure an endpoint.
type Credentials struct {
	SSHUser        string
	SSHPassword    string
	ConfigUser     string
	ConfigPassword string
}

// PresentationType is how a presentation is shown to a learner.
type PresentationType string

// Presentation types.
const (
	PresentationSSH  PresentationType = "ssh"
	PresentationHTTP PresentationType = "http"
)

// Presentation is one way a learner reaches an endpoint.
type Presentation struct {
	Name string
	Port int
	Type PresentationType
}

// Interface is one data-plane interface of an endpoint.
type Interface struct {
	// Name is the container-side name: eth1, eth2, … .
	Name string
	// GuestName is the guest's name for the NIC: the image's
	// networkInterfaces entry when given, else Name.
	GuestName string
	// MAC is the guest NIC's address: locally administered, derived from
	// the lesson, endpoint and interface so it is stable across launches.
	MAC net.HardwareAddr
	MTU int
	// Link is the index into Model.Links of the link this interface is on.
	Link int
	// Peer and PeerInterface name the other end of the link.
	Peer          string
	PeerInterface string
	// Address is the planned address (with the subnet's prefix length);
	// invalid (the zero Prefix) when the connection gives no subnet.
	Address netip.Prefix
}

// Link is one lesson connection: a cable between two endpoint interfaces.
type Link struct {
	Index int
	A, B  LinkEnd
	// Subnet is the connection's subnet; Explicit says the lesson gave it
	// (otherwise Subnet is Antidote's default and no addresses are planned).
	Subnet   netip.Prefix
	Explicit bool
	MTU      int
}

// LinkEnd is one end of a link.
type LinkEnd struct {
	Endpoint  string
	Interface string // container-side name, e.g. eth1
}

// Method is how an endpoint is configured at a stage.
type Method string

// Configuration methods. Netconf and SSH are endpointkit extensions to the
// Antidote format.
const (
	MethodNone    Method = ""
	MethodNapalm  Method = "napalm"
	MethodPython  Method = "python"
	MethodAnsible Method = "ansible"
	MethodNetconf Method = "netconf" // extension: <ep>.xml
	MethodSSH     Method = "ssh"     // extension: <ep>.sh
)

// StageConfig is an endpoint's configuration for one stage.
type StageConfig struct {
	Stage  int
	Method Method
	// File is the absolute path of the stage's config file for this
	// endpoint (stageN/configs/<file>); empty when Method is MethodNone.
	File string
	// Driver is the NAPALM driver taken from <ep>-<driver>.txt.
	Driver string
}
