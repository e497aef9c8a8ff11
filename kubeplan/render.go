package kubeplan

import (
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/wiring"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/validation"
)

// Labels on every object of an instance.
const (
	LabelLesson    = "endpointkit.io/lesson"
	LabelInstance  = "endpointkit.io/instance"
	LabelStage     = "endpointkit.io/stage" // on the Namespace
	LabelEndpoint  = "endpointkit.io/endpoint"
	LabelManagedBy = "app.kubernetes.io/managed-by"
	ManagedBy      = "endpointkit"

	// NetworksAnnotation is Multus' list of a pod's extra networks.
	NetworksAnnotation = "k8s.v1.cni.cncf.io/networks"

	// NamespacePrefix starts every instance's namespace name.
	NamespacePrefix = "ek-"
	// ServiceAccountName is the service account the pods run as.
	ServiceAccountName = "endpointkit"
	// PolicyName is the instance's NetworkPolicy.
	PolicyName = "endpointkit-isolate"
)

// Errors of Render.
var (
	// ErrImage: an endpoint's image has no reference by digest in
	// Options.Images (push it to a registry first).
	ErrImage = errors.New("kubeplan: image not resolved to a registry digest")
	// ErrInvalid: the model, plan or options cannot be expressed as
	// Kubernetes objects.
	ErrInvalid = errors.New("kubeplan: invalid input")
)

// Security is how much privilege an endpoint container gets.
type Security string

// Security modes.
const (
	// SecurityPrivileged runs the launcher privileged (the default): every
	// host device, including /dev/kvm where the node has it.
	SecurityPrivileged Security = "privileged"
	// SecurityMinimal grants NET_ADMIN (TAPs, tc, addresses) and mounts the
	// node's /dev/net/tun; /dev/kvm only through Options.KVMResource.
	SecurityMinimal Security = "minimal"
)

// Image is what the objects need to know about an endpoint image.
type Image struct {
	// Ref is the image by digest: registry/repository@sha256:… .
	Ref string
	// Ports are the image's management and readiness ports (SSH, NETCONF,
	// HTTP APIs), forwarded into the guest besides the lesson's ports.
	Ports []int
	// MemoryMiB and CPUs size the guest; the pod requests them plus the
	// launcher's overhead. 0 means the defaults (512 MiB, 1 CPU).
	MemoryMiB, CPUs int
	// Identity: the image takes a per-instance identity
	// (vmimage.IdentityFWCfg). Each pod of it mounts its endpoint's
	// identity Secret (IdentitySecret) at IdentityDir and the launcher is
	// given the file there (LaunchInput.Identity).
	Identity bool
}

// Options say how an instance is rendered.
type Options struct {
	// Stage is the lesson stage the instance is at (a namespace label).
	Stage int
	// Images maps image slugs to images in a registry; every endpoint's
	// image must be there.
	Images map[string]Image
	// LessonImage is the lesson-content image by digest: the lesson
	// directory at LessonImageDir and a cp program. Empty: pods get no
	// lesson directory.
	LessonImage string
	// LessonFiles are the lesson directory's files, delivered in a
	// ConfigMap (LessonConfigMap) mounted at LessonDir in every endpoint
	// container when LessonImage is empty: no init container and no
	// image to push, for a lesson of up to MaxLessonFiles bytes.
	LessonFiles []LessonFile
	// Node pins every pod to the named node (a cluster without a
	// scheduler, or one chosen by the caller). Empty: pods are co-located
	// by required pod affinity on kubernetes.io/hostname and the scheduler
	// picks the node.
	Node string
	// Security is SecurityPrivileged (default) or SecurityMinimal.
	Security Security
	// KVMResource is the extended resource a device plugin advertises for
	// /dev/kvm (for example devices.kubevirt.io/kvm); when set every pod
	// requests one, so it lands on a node with KVM and gets the device.
	KVMResource string
	// CPURequest is the CPU each guest vCPU requests, in millicores;
	// 0 means 250.
	CPURequest int
	// Launcher renders the endpoint container's command; nil means
	// DefaultLauncher.
	Launcher Launcher
	// Identities are the instance identities (vmimage.LoadIdentity's
	// JSON) of the endpoints whose image takes one, by endpoint name: each
	// becomes the endpoint's identity Secret. They hold private keys:
	// Render makes none up, and an endpoint left out gets no Secret (its
	// pod waits for one made otherwise).
	Identities map[string][]byte
}

// Objects are the Kubernetes objects of one lesson instance.
type Objects struct {
	Instance       string
	Namespace      *corev1.Namespace
	ServiceAccount *corev1.ServiceAccount
	// Networks are the NetworkAttachmentDefinitions, one per connection,
	// in connection order.
	Networks []*unstructured.Unstructured
	Pods     []*corev1.Pod // in the lesson's endpoints order
	// Secrets are the endpoints' identity Secrets (Options.Identities),
	// in the lesson's endpoints order.
	Secrets  []*corev1.Secret
	Services []*corev1.Service
	Policy   *networkingv1.NetworkPolicy
	// Lesson holds the lesson directory (Options.LessonFiles); nil when
	// the pods get it from the lesson-content image, or get none.
	Lesson *corev1.ConfigMap
}

// Namespace is the namespace of an instance.
func Namespace(instance string) string { return NamespacePrefix + instance }

// Render turns an instance's endpoint model and wiring plan into its
// objects. It is pure. Errors name the endpoint, link or option at fault
// and wrap ErrImage or ErrInvalid.
func Render(m *endpoint.Model, p *wiring.Plan, o Options) (*Objects, error) {
	if m == nil || p == nil {
		return nil, fmt.Errorf("%w: no model or plan", ErrInvalid)
	}
	if err := wiring.ValidInstance(p.Instance); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	if len(p.Endpoints) != len(m.Endpoints) {
		return nil, fmt.Errorf("%w: the plan has %d endpoints, the model %d (plan the same model)", ErrInvalid, len(p.Endpoints), len(m.Endpoints))
	}
	if errs := validation.IsValidLabelValue(m.Lesson); len(errs) > 0 {
		return nil, fmt.Errorf("%w: lesson slug %q cannot be a label value: %s", ErrInvalid, m.Lesson, strings.Join(errs, "; "))
	}
	switch o.Security {
	case "", SecurityPrivileged, SecurityMinimal:
	default:
		return nil, fmt.Errorf("%w: Options.Security %q: want %q or %q", ErrInvalid, o.Security, SecurityPrivileged, SecurityMinimal)
	}
	if o.LessonImage != "" && !byDigest(o.LessonImage) {
		return nil, fmt.Errorf("%w: lesson image %q: want a reference by digest (repository@sha256:…)", ErrImage, o.LessonImage)
	}
	r := &renderer{m: m, p: p, o: o, ns: Namespace(p.Instance)}
	objs := &Objects{
		Instance:       p.Instance,
		Namespace:      r.namespace(),
		ServiceAccount: r.serviceAccount(),
		Policy:         r.policy(),
	}
	nets, err := r.networks()
	if err != nil {
		return nil, err
	}
	objs.Networks = nets
	if r.lessonByConfigMap() {
		if objs.Lesson, err = r.lessonConfigMap(); err != nil {
			return nil, err
		}
	}
	for i := range m.Endpoints {
		pod, err := r.pod(&m.Endpoints[i], &p.Endpoints[i])
		if err != nil {
			return nil, err
		}
		objs.Pods = append(objs.Pods, pod)
		if sec := r.identitySecret(&m.Endpoints[i]); sec != nil {
			objs.Secrets = append(objs.Secrets, sec)
		}
	}
	if objs.Services, err = r.services(); err != nil {
		return nil, err
	}
	return objs, nil
}

// lessonByConfigMap reports whether the pods get the lesson directory from
// the lesson ConfigMap.
func (r *renderer) lessonByConfigMap() bool {
	return r.o.LessonImage == "" && len(r.o.LessonFiles) > 0
}

type renderer struct {
	m  *endpoint.Model
	p  *wiring.Plan
	o  Options
	ns string
}

func (r *renderer) labels(extra ...string) map[string]string {
	l := map[string]string{LabelManagedBy: ManagedBy, LabelLesson: r.m.Lesson, LabelInstance: r.p.Instance}
	for i := 0; i+1 < len(extra); i += 2 {
		l[extra[i]] = extra[i+1]
	}
	return l
}

func (r *renderer) meta(name string, extra ...string) metav1.ObjectMeta {
	return metav1.ObjectMeta{Name: name, Namespace: r.ns, Labels: r.labels(extra...)}
}

func (r *renderer) namespace() *corev1.Namespace {
	return &corev1.Namespace{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Namespace"},
		ObjectMeta: metav1.ObjectMeta{Name: r.ns, Labels: r.labels(LabelStage, strconv.Itoa(r.o.Stage))},
	}
}

func (r *renderer) serviceAccount() *corev1.ServiceAccount {
	no := false
	return &corev1.ServiceAccount{
		TypeMeta:                     metav1.TypeMeta{APIVersion: "v1", Kind: "ServiceAccount"},
		ObjectMeta:                   r.meta(ServiceAccountName),
		AutomountServiceAccountToken: &no,
	}
}

// byDigest reports whether ref names an image by digest.
func byDigest(ref string) bool {
	_, digest, ok := strings.Cut(ref, "@sha256:")
	return ok && len(digest) == 64 && strings.Trim(digest, "0123456789abcdef") == ""
}
