package wiring

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Names of everything an instance creates. All are derived from the instance
// name, so Teardown can check that a state file only names things that belong
// to its instance before deleting them.
//
//	namespace of endpoint E         ek-<instance>.<E>
//	fabric namespace                ek-<instance> (ek-<instance>@<host> on other hosts)
//	  management bridge             mgmt
//	  its port for E's eth0         m<position of E>
//	  its uplink to the host        uplink
//	  bridge of segment s           s<s>, ports s<s>p<k>
//	host end of the uplink          ek<tag>  (tag: 6 hex digits of sha256(instance))
//	nftables table (ip family)      ek-<instance>
//
// Endpoint names are DNS labels (no dots), so "<instance>.<E>" never collides
// with another instance's fabric namespace or with another endpoint. Only
// one link per instance lives in the host namespace; the 15-byte limit on
// interface names only matters there.

// NamePrefix starts every namespace and nftables table name.
const NamePrefix = "ek-"

// maxInstanceLen keeps derived names readable; namespace names themselves
// are file names and have no 15-byte limit.
const maxInstanceLen = 40

var (
	instanceRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]*[a-z0-9])?$`)
	labelRE    = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?$`)
)

// ValidInstance reports whether s can name a lesson instance: lower-case
// letters, digits and inner dashes, at most 40 bytes.
func ValidInstance(s string) error {
	if len(s) == 0 || len(s) > maxInstanceLen || !instanceRE.MatchString(s) {
		return fmt.Errorf("instance name %q: use 1 to %d lower-case letters, digits and inner dashes", s, maxInstanceLen)
	}
	return nil
}

// names derives every resource name of one instance.
type names struct {
	instance string
	tag      string // 6 hex digits
}

func newNames(instance string) names {
	sum := sha256.Sum256([]byte("endpointkit/" + instance))
	return names{instance: instance, tag: hex.EncodeToString(sum[:3])}
}

func (n names) namespace(endpoint string) string { return NamePrefix + n.instance + "." + endpoint }
func (n names) fabric() string                   { return NamePrefix + n.instance }
func (n names) nftTable() string                 { return NamePrefix + n.instance }
func (n names) hostLink() string                 { return "ek" + n.tag }

// ownsNamespace reports whether s is one of the instance's namespace names:
// the fabric (of the default host, or "@host"), or an endpoint's.
func (n names) ownsNamespace(s string) bool {
	rest, ok := strings.CutPrefix(s, n.fabric())
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	label, ok := strings.CutPrefix(rest, ".")
	if !ok {
		label, ok = strings.CutPrefix(rest, "@")
	}
	return ok && labelRE.MatchString(label)
}

// Fabric-namespace names: unique inside that namespace is enough.
const (
	mgmtBridgeName = "mgmt"
	uplinkName     = "uplink"
)

func mgmtPort(pos int) string       { return "m" + strconv.Itoa(pos) }
func segmentBridge(seg int) string  { return "s" + strconv.Itoa(seg) }
func segmentPort(seg, k int) string { return "s" + strconv.Itoa(seg) + "p" + strconv.Itoa(k) }

// maxIfName is the Linux interface-name limit (IFNAMSIZ - 1).
const maxIfName = 15

// validIfName reports whether s is a usable interface name.
func validIfName(s string) error {
	switch {
	case s == "" || s == "." || s == "..":
		return fmt.Errorf("interface name %q is not allowed", s)
	case len(s) > maxIfName:
		return fmt.Errorf("interface name %q is longer than %d bytes", s, maxIfName)
	case strings.ContainsAny(s, "/: \t\n\r\x00"):
		return fmt.Errorf("interface name %q contains '/', ':' or white space", s)
	}
	return nil
}

// Interface indexes chosen in a namespace this package creates, so that the
// configuration batches can address interfaces without looking them up. A
// new namespace holds only lo (index 1) plus, on some kernels, fallback
// tunnel devices with small indexes; these start well above.
const (
	mgmtIfIndex  = 100 // eth0
	firstIfIndex = 101 // the endpoint's k-th data interface gets firstIfIndex+k
	// In the fabric namespace:
	mgmtBridgeIndex = 10
	uplinkIndex     = 11
	bridgeIndex0    = 1 << 16 // bridge of segment s: bridgeIndex0+s
	mgmtPortIndex0  = 1 << 18 // port of the endpoint at pos: mgmtPortIndex0+pos
	portIndex0      = 1 << 20 // segment port of link l, side k (0 a, 1 b): portIndex0+2l+k
)
