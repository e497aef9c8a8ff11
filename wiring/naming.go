package wiring

import (
	"crypto/sha256"
	"encoding/binary"
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
//	namespace of endpoint E     ek-<instance>.<E>
//	fabric namespace (bridges)  ek-<instance>
//	host-side links             ek<tag>…  (tag: 6 hex digits of sha256(instance))
//	  management bridge         ek<tag>br
//	  host end of E's eth0      ek<tag>m<position of E>
//	nftables table (ip family)  ek-<instance>
//	link group (host links)     0x4e000000 | 24 bits of sha256(instance)
//
// Endpoint names are DNS labels (no dots), so "<instance>.<E>" never collides
// with another instance's fabric namespace or with another endpoint.

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
	group    uint32
}

func newNames(instance string) names {
	sum := sha256.Sum256([]byte("endpointkit/" + instance))
	return names{
		instance: instance,
		tag:      hex.EncodeToString(sum[:3]),
		group:    0x4e000000 | binary.BigEndian.Uint32(sum[3:7])&0x00ffffff,
	}
}

func (n names) namespace(endpoint string) string { return NamePrefix + n.instance + "." + endpoint }
func (n names) fabric() string                   { return NamePrefix + n.instance }
func (n names) nftTable() string                 { return NamePrefix + n.instance }
func (n names) hostPrefix() string               { return "ek" + n.tag }
func (n names) mgmtBridge() string               { return n.hostPrefix() + "br" }
func (n names) mgmtHostLink(pos int) string      { return n.hostPrefix() + "m" + strconv.Itoa(pos) }

// segmentBridge and segmentPort name the fabric-namespace side of a bridge
// segment; they only need to be unique inside that namespace.
func segmentBridge(seg int) string  { return "s" + strconv.Itoa(seg) }
func segmentPort(seg, k int) string { return "s" + strconv.Itoa(seg) + "p" + strconv.Itoa(k) }
func (n names) ownsNamespace(s string) bool {
	return s == n.fabric() || strings.HasPrefix(s, n.fabric()+".") && labelRE.MatchString(strings.TrimPrefix(s, n.fabric()+"."))
}
func (n names) ownsHostLink(s string) bool {
	return strings.HasPrefix(s, n.hostPrefix()) && len(s) <= maxIfName
}

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
// configuration batch can address interfaces without looking them up. A new
// namespace holds only lo (index 1) plus, on some kernels, fallback tunnel
// devices with small indexes; these start well above.
const (
	mgmtIfIndex  = 100     // eth0
	firstIfIndex = 101     // the endpoint's k-th data interface gets firstIfIndex+k
	bridgeIndex0 = 50      // fabric bridge of segment s gets bridgeIndex0+s
	portIndex0   = 1 << 20 // fabric port of link l, side k (0 a, 1 b): portIndex0+2l+k
)
