package kubeplan

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/wiring"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/apimachinery/pkg/util/validation"
)

// NetworkAttachmentDefinition's API.
const (
	NADGroup    = "k8s.cni.cncf.io"
	NADVersion  = "v1"
	NADKind     = "NetworkAttachmentDefinition"
	NADResource = "network-attachment-definitions"

	cniVersion  = "0.4.0"
	maxIfName   = 15 // IFNAMSIZ - 1
	bridgeTagHx = 8  // hex digits of the namespace hash in a bridge name
)

// BridgeName is the Linux bridge of link (or, for a wiring segment, of
// segment seg ≥ 0) of the instance: "ek", 8 hex digits of a hash of the
// namespace, then l<link> or s<seg>. It fits the 15-byte limit for up to
// 9999 links and differs between instances sharing a node.
func BridgeName(instance string, link, seg int) string {
	sum := sha256.Sum256([]byte("endpointkit/bridge/" + Namespace(instance)))
	name := "ek" + hex.EncodeToString(sum[:])[:bridgeTagHx]
	if seg >= 0 {
		return name + "s" + strconv.Itoa(seg)
	}
	return name + "l" + strconv.Itoa(link)
}

// networkName is a link's NetworkAttachmentDefinition name.
func networkName(l wiring.LinkPlan) string {
	return fmt.Sprintf("link%d-%s-%s", l.Index, l.A.Endpoint, l.B.Endpoint)
}

// cniNetwork is the bridge CNI configuration of one NAD.
type cniNetwork struct {
	CNIVersion   string          `json:"cniVersion"`
	Name         string          `json:"name"`
	Type         string          `json:"type"`
	Bridge       string          `json:"bridge"`
	MTU          int             `json:"mtu,omitempty"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	IPAM         *cniIPAM        `json:"ipam,omitempty"`
}

// cniIPAM is the static IPAM plugin: each pod asks for its planned
// address through the "ips" capability (the networks annotation), and
// nothing is kept on the node (host-local would leave a lease directory
// per network behind on every node).
type cniIPAM struct {
	Type string `json:"type"`
}

// networks renders one NetworkAttachmentDefinition per connection.
func (r *renderer) networks() ([]*unstructured.Unstructured, error) {
	var out []*unstructured.Unstructured
	for _, l := range r.p.Links {
		where := fmt.Sprintf("link %d (%s.%s ↔ %s.%s)", l.Index, l.A.Endpoint, l.A.Interface, l.B.Endpoint, l.B.Interface)
		seg := -1
		switch l.Kind {
		case wiring.KindVeth:
		case wiring.KindBridge:
			seg = l.Segment
		default:
			return nil, fmt.Errorf("%w: %s is a %s link; a Kubernetes instance keeps its endpoints on one node (plan without Placement)", ErrInvalid, where, l.Kind)
		}
		bridge := BridgeName(r.p.Instance, l.Index, seg)
		if len(bridge) > maxIfName {
			return nil, fmt.Errorf("%w: %s: bridge name %s is longer than %d bytes (too many links)", ErrInvalid, where, bridge, maxIfName)
		}
		// One CNI network name per bridge, unique on the node (it keys
		// the plugins' caches).
		cfg := cniNetwork{CNIVersion: cniVersion, Name: r.ns + "-" + bridge[len("ek")+bridgeTagHx:], Type: "bridge", Bridge: bridge, MTU: l.MTU}
		if l.Subnet.IsValid() {
			cfg.Capabilities = map[string]bool{"ips": true}
			cfg.IPAM = &cniIPAM{Type: "static"}
		}
		raw, err := json.Marshal(cfg)
		if err != nil {
			return nil, err
		}
		name := networkName(l)
		if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
			return nil, fmt.Errorf("%w: %s: network name %q: %s", ErrInvalid, where, name, strings.Join(errs, "; "))
		}
		out = append(out, &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": NADGroup + "/" + NADVersion,
			"kind":       NADKind,
			"metadata": map[string]any{
				"name":      name,
				"namespace": r.ns,
				"labels":    toAny(r.labels()),
			},
			"spec": map[string]any{"config": string(raw)},
		}})
	}
	return out, nil
}

func toAny(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// networkSelection is one element of the Multus networks annotation.
type networkSelection struct {
	Name      string   `json:"name"`
	Interface string   `json:"interface"`
	IPs       []string `json:"ips,omitempty"`
}

// networksAnnotation lists an endpoint's data interfaces in order, under
// the model's names, with the planned addresses.
func (r *renderer) networksAnnotation(ep *wiring.EndpointPlan) (string, error) {
	sel := []networkSelection{}
	for _, ifc := range ep.Interfaces {
		l := r.p.Links[ifc.Link]
		s := networkSelection{Name: networkName(l), Interface: ifc.Name}
		if ifc.Address.IsValid() {
			s.IPs = []string{ifc.Address.String()}
		}
		sel = append(sel, s)
	}
	if len(sel) == 0 {
		return "", nil
	}
	raw, err := json.Marshal(sel)
	return string(raw), err
}

var nonLabel = regexp.MustCompile(`[^a-z0-9-]+`)

// serviceName is a DNS-1035 label made of the endpoint and presentation
// names.
func serviceName(ep, pres string) string {
	s := strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(ep+"-"+pres), "-"), "-")
	if s == "" || s[0] < 'a' || s[0] > 'z' {
		s = "p-" + s
	}
	if len(s) > validation.DNS1035LabelMaxLength {
		sum := sha256.Sum256([]byte(ep + "\x00" + pres))
		s = strings.TrimRight(s[:validation.DNS1035LabelMaxLength-9], "-") + "-" + hex.EncodeToString(sum[:4])
	}
	return s
}

// services renders a ClusterIP Service per presentation.
func (r *renderer) services() ([]*corev1.Service, error) {
	var out []*corev1.Service
	seen := map[string]string{}
	for _, ep := range r.m.Endpoints {
		for _, pr := range ep.Presentations {
			name := serviceName(ep.Name, pr.Name)
			who := ep.Name + " presentation " + pr.Name
			if prev, dup := seen[name]; dup {
				return nil, fmt.Errorf("%w: %s and %s both become Service %q; rename one", ErrInvalid, prev, who, name)
			}
			seen[name] = who
			port := strings.Trim(nonLabel.ReplaceAllString(strings.ToLower(pr.Name), "-"), "-")
			if len(port) > validation.DNS1035LabelMaxLength-48 || validation.IsDNS1035Label(port) != nil {
				port = "p" + strconv.Itoa(pr.Port)
			}
			svc := &corev1.Service{
				TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Service"},
				ObjectMeta: r.meta(name, LabelEndpoint, ep.Name),
				Spec: corev1.ServiceSpec{
					Type:     corev1.ServiceTypeClusterIP,
					Selector: map[string]string{LabelInstance: r.p.Instance, LabelEndpoint: ep.Name},
					Ports: []corev1.ServicePort{{Name: port, Protocol: corev1.ProtocolTCP,
						Port: int32(pr.Port), TargetPort: intstr.FromInt32(int32(pr.Port))}},
				},
			}
			svc.Annotations = map[string]string{"endpointkit.io/presentation": pr.Name, "endpointkit.io/presentation-type": string(pr.Type)}
			out = append(out, svc)
		}
	}
	return out, nil
}

// policy lets the instance's pods reach each other and DNS, nothing else,
// and be reached only from each other. (Port-forwards through the API
// server enter the pod's network namespace directly and are not affected;
// Multus' secondary interfaces are outside NetworkPolicy.)
func (r *renderer) policy() *networkingv1.NetworkPolicy {
	udp, tcp := corev1.ProtocolUDP, corev1.ProtocolTCP
	dns := intstr.FromInt32(53)
	same := []networkingv1.NetworkPolicyPeer{{PodSelector: &metav1.LabelSelector{}}}
	return &networkingv1.NetworkPolicy{
		TypeMeta:   metav1.TypeMeta{APIVersion: "networking.k8s.io/v1", Kind: "NetworkPolicy"},
		ObjectMeta: r.meta(PolicyName),
		Spec: networkingv1.NetworkPolicySpec{
			PodSelector: metav1.LabelSelector{},
			PolicyTypes: []networkingv1.PolicyType{networkingv1.PolicyTypeIngress, networkingv1.PolicyTypeEgress},
			Ingress:     []networkingv1.NetworkPolicyIngressRule{{From: same}},
			Egress: []networkingv1.NetworkPolicyEgressRule{
				{To: same},
				{Ports: []networkingv1.NetworkPolicyPort{{Protocol: &udp, Port: &dns}, {Protocol: &tcp, Port: &dns}}},
			},
		},
	}
}
