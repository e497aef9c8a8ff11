package imagebuild

import (
	"cmp"
	"fmt"
	"io/fs"
	"strconv"

	"github.com/endpointkit/endpointkit/internal/strictyaml"
	"gopkg.in/yaml.v3"
)

// Standard ports of the declarative APIs.
const (
	DefaultSSHPort     = 22
	DefaultNETCONFPort = 830
)

// RecipeAPIs are the management APIs an image offers. Declaring one makes
// the builder install and enable what it needs:
//
//	apis: {ssh: true, netconf: true, http: {port: 8080}}
type RecipeAPIs struct {
	// SSH is sshd: true (port 22, the default) or its guest port. It
	// cannot be off: the lesson user logs in over SSH.
	SSH APISwitch `yaml:"ssh,omitempty" json:"ssh,omitempty"`
	// NETCONF is NETCONF over SSH (RFC 6242): true (port 830) or a port.
	// Debian-based kinds (debootstrap, iso, disk with cloudInit) get
	// yuma123 netconfd behind sshd's netconf subsystem, the first user its
	// superuser.
	NETCONF APISwitch `yaml:"netconf,omitempty" json:"netconf,omitempty"`
	// HTTP is a web service the image runs (the recipe installs it); the
	// launcher waits for its port before calling the endpoint ready.
	HTTP *RecipeHTTP `yaml:"http,omitempty" json:"http,omitempty"`
}

// RecipeHTTP is an image's HTTP API.
type RecipeHTTP struct {
	Port int `yaml:"port" json:"port" jsonschema:"minimum=1,maximum=65535"`
}

// APISwitch is an API turned on (at its standard port or the one given)
// or off. In YAML it is true, false or a port number.
type APISwitch struct {
	On   bool `json:"on"`
	Port int  `json:"port,omitempty"` // 0 with On: the API's standard port
}

// DecodeYAMLScalar reads true, false (yes/no too) or a port number.
func (a *APISwitch) DecodeYAMLScalar(n *yaml.Node) string {
	if b, ok := strictyaml.Bool(n); ok {
		*a = APISwitch{On: b}
		return ""
	}
	if p, ok := strictyaml.WholeNumber(n); ok {
		if p < 1 || p > 65535 {
			return "want a port in 1-65535 (or true for the standard port)"
		}
		*a = APISwitch{On: true, Port: int(p)}
		return ""
	}
	return "want true, false or a port number"
}

// port returns the guest port of an API that is on (def when none was
// given), or 0 when it is off.
func (a APISwitch) port(def int) int {
	switch {
	case !a.On:
		return 0
	case a.Port == 0:
		return def
	}
	return a.Port
}

// String renders the switch as written in YAML.
func (a APISwitch) String() string {
	if a.On && a.Port != 0 {
		return strconv.Itoa(a.Port)
	}
	return strconv.FormatBool(a.On)
}

// RecipeTest is one self-test of an image.
type RecipeTest struct {
	// Name says what is tested, in messages; default "test N".
	Name string `yaml:"name,omitempty" json:"name,omitempty"`
	// Run is the script, run by the image's first user over SSH with
	// `sh -ec`; exit status 0 passes.
	Run string `yaml:"run" json:"run"`
}

// resolveAPIs fills the API defaults (SSH on at 22) and checks them.
func (r *Recipe) resolveAPIs(bad func(field, format string, a ...any)) {
	if r.pos.Has("apis.ssh") && !r.APIs.SSH.On {
		bad("apis.ssh", "cannot be off: the lesson user logs in over SSH (say true or a port)")
	}
	r.APIs.SSH = APISwitch{On: true, Port: cmp.Or(r.APIs.SSH.Port, DefaultSSHPort)}
	if r.APIs.NETCONF.On {
		r.APIs.NETCONF.Port = r.APIs.NETCONF.port(DefaultNETCONFPort)
		if r.Kind == "initramfs" {
			bad("apis.netconf", "the tiny initramfs image has no NETCONF server; use kind debootstrap, iso or disk")
		}
		if r.APIs.NETCONF.Port == r.APIs.SSH.Port {
			bad("apis.netconf", "port %d is SSH's; NETCONF needs its own (830)", r.APIs.NETCONF.Port)
		}
	}
	if h := r.APIs.HTTP; h != nil && (h.Port < 1 || h.Port > 65535) {
		bad("apis.http.port", "port %d out of range 1-65535", h.Port)
	}
	for i := range r.Tests {
		t := &r.Tests[i]
		if t.Name == "" {
			t.Name = fmt.Sprintf("test %d", i+1)
		}
		if t.Run == "" {
			bad(fmt.Sprintf("tests[%d].run", i), "missing: the script to run in the image (exit 0 passes)")
		}
	}
}

// httpPorts lists the HTTP API's port, if any.
func (a RecipeAPIs) httpPorts() []int {
	if a.HTTP == nil {
		return nil
	}
	return []int{a.HTTP.Port}
}

// apiSetup is what the declared APIs add to a Debian-based image.
type apiSetup struct {
	Packages []string
	Files    []apiFile
	Services []string
}

// apiFile is a file the APIs put into the image.
type apiFile struct {
	Path    string
	Mode    uint32
	Content string
}

// netconfPackages are yuma123's server and the modules the NETCONF API
// loads.
func netconfPackages() []string {
	return []string{"netconfd", "netconfd-module-ietf-interfaces", "netconfd-module-ietf-system"}
}

// netconfUnit runs yuma123 netconfd for sshd's netconf subsystem.
// ietf-interfaces is loaded from its YANG file: its packaged
// instrumentation needs helper scripts Debian does not ship and aborts.
const netconfUnit = `[Unit]
Description=yuma123 netconfd NETCONF server (reached through sshd's netconf subsystem)
After=network.target
Before=ssh.service

[Service]
Environment=HOME=/var/lib/netconfd
StateDirectory=netconfd
WorkingDirectory=/var/lib/netconfd
# A socket left by a crashed instance makes the next one fail to bind.
ExecStartPre=/bin/rm -f /tmp/ncxserver.sock
ExecStart=/usr/sbin/netconfd --superuser=%s --no-startup --target=candidate --port=%d --module=iana-if-type --module=/usr/share/yuma/modules/ietf/ietf-interfaces@2014-05-08.yang --module=ietf-system --log-level=warn
Restart=on-failure

[Install]
WantedBy=multi-user.target
`

// netconfSSHD makes sshd listen on the NETCONF port too and hand the
// netconf subsystem to yuma123 (RFC 6242).
const netconfSSHD = `# endpointkit: NETCONF over SSH (RFC 6242) on port %[2]d, next to SSH on %[1]d.
Port %[1]d
Port %[2]d
Subsystem netconf /usr/sbin/netconf-subsystem
`

// apis returns what r's declared APIs install, enable and write.
func (r *Recipe) apis() apiSetup {
	var s apiSetup
	if p := r.APIs.NETCONF.port(DefaultNETCONFPort); p != 0 {
		s.Packages = append(s.Packages, netconfPackages()...)
		s.Files = append(s.Files,
			apiFile{"/etc/systemd/system/netconfd.service", 0o644, fmt.Sprintf(netconfUnit, r.Users[0].Name, p)},
			apiFile{"/etc/ssh/sshd_config.d/netconf.conf", 0o644, fmt.Sprintf(netconfSSHD, r.APIs.SSH.Port, p)})
		s.Services = append(s.Services, "netconfd.service")
	}
	return s
}

// plan turns the API files into file-system plan entries.
func (s apiSetup) plan() fsPlan {
	var p fsPlan
	for _, f := range s.Files {
		p = append(p, fileEntry(f.Path, fs.FileMode(f.Mode), []byte(f.Content)))
	}
	return p
}
