package kuberun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/kubeplan"
	"golang.org/x/sync/errgroup"
	authorizationv1 "k8s.io/api/authorization/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Kind is the RuntimeRecord kind of instances this runtime placed.
const Kind = "kubernetes"

// Errors a user can cause; each error names the cluster, the namespace,
// the image or the permission at fault.
var (
	// ErrKubeconfig: the kubeconfig is missing, unreadable or has no such
	// context.
	ErrKubeconfig = errors.New("kubeconfig unusable")
	// ErrUnreachable: the cluster's API server did not answer.
	ErrUnreachable = errors.New("cluster unreachable")
	// ErrForbidden: the cluster's RBAC refuses something the runtime needs
	// (the error lists each verb and resource).
	ErrForbidden = errors.New("refused by the cluster's RBAC")
	// ErrNamespaceExists: the instance's namespace already exists on the
	// cluster (use replace, or remove it first).
	ErrNamespaceExists = errors.New("namespace already exists")
	// ErrImageNotInRegistry: an endpoint image is in no registry the
	// cluster can pull from (give a registry to push it to).
	ErrImageNotInRegistry = errors.New("image not in a registry")
	// ErrUnsupported: a feature of the local runtime this one does not
	// have yet (restarting one endpoint, adding a link to a running
	// instance). It wraps errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("not supported by the Kubernetes runtime: %w", errors.ErrUnsupported)
)

// Options configure a [Runtime].
type Options struct {
	// Kubeconfig is the kubeconfig file; "" follows kubectl's rules
	// ($KUBECONFIG, else ~/.kube/config).
	Kubeconfig string
	// Context is the kubeconfig context; "" is its current context.
	Context string
	// Registry is a repository prefix (REGISTRY/PATH, e.g.
	// 127.0.0.1:5000/endpointkit) the cluster pulls from: endpoint images
	// are REGISTRY/PATH/SLUG, the lesson content REGISTRY/PATH/lesson-SLUG;
	// an image missing there is pushed (imagebuild.Push) before anything
	// is applied. Without it every image must be in a registry already:
	// Images, or the reference its OCI layout was built with.
	Registry string
	// Images maps image slugs to references already in a registry (a tag
	// or a digest); they win over Registry.
	Images map[string]string
	// Push configures pushes to Registry (CA, plain HTTP, credentials).
	Push imagebuild.PushOptions
	// Build builds an image's OCI layout (IMAGE_DIR/oci) when it has none
	// (imagebuild.Builder.BuildOCI).
	Build imagebuild.Options
	// Node pins every pod to the named node; "" lets the scheduler place
	// the instance's pods together (pod affinity).
	Node string
	// Security, KVMResource and CPURequest are kubeplan's (privileged
	// pods by default, 250 m of CPU per vCPU).
	Security    kubeplan.Security
	KVMResource string
	CPURequest  int
	// Logger receives structured details; nil discards.
	Logger *slog.Logger
}

// Runtime places lesson instances on a Kubernetes cluster: a namespace per
// instance, a pod per endpoint, a NetworkAttachmentDefinition per link
// (package kubeplan), reached through the API server. It implements
// endpointkit.Runtime, LogWriter, Recorded, Checker, Accessor and
// HostKeyer; methods
// may be called concurrently.
type Runtime struct {
	opts       Options
	cfg        *rest.Config
	cs         kubernetes.Interface
	applier    *kubeplan.Applier
	kubeconfig string // absolute path, "" for the default loading rules
	context    string // the context used
	server     string

	mu sync.Mutex
	// sshPorts are the guest SSH ports of the endpoints Place placed, by
	// pod (Ready proves the forward to it).
	sshPorts map[string]int
	// learnsKeys are the pods Place placed whose guest's host keys the
	// launcher learns from its console (the image lists none and takes no
	// identity): Ready waits until the launcher has them.
	learnsKeys map[string]bool
	// forwards are the port forwards in use, by POD:PORT.
	forwards map[string]*forward
}

var (
	_ endpointkit.Runtime   = (*Runtime)(nil)
	_ endpointkit.LogWriter = (*Runtime)(nil)
	_ endpointkit.Recorded  = (*Runtime)(nil)
	_ endpointkit.Checker   = (*Runtime)(nil)
	_ endpointkit.Accessor  = (*Runtime)(nil)
	_ endpointkit.HostKeyer = (*Runtime)(nil)
)

// New returns the runtime of the cluster the kubeconfig names. It reads
// the kubeconfig but does not contact the cluster (Check does). The error
// wraps ErrKubeconfig.
func New(o Options) (*Runtime, error) {
	r := &Runtime{opts: o, sshPorts: map[string]int{}, learnsKeys: map[string]bool{}, forwards: map[string]*forward{}}
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	if o.Kubeconfig != "" {
		abs, err := filepath.Abs(o.Kubeconfig)
		if err != nil {
			return nil, err
		}
		if _, err := os.Stat(abs); err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrKubeconfig, o.Kubeconfig, err)
		}
		r.kubeconfig, rules.ExplicitPath = abs, abs
	}
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: o.Context})
	raw, err := cc.RawConfig()
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKubeconfig, r.where(), err)
	}
	r.context = o.Context
	if r.context == "" {
		r.context = raw.CurrentContext
	}
	if _, ok := raw.Contexts[r.context]; !ok {
		names := make([]string, 0, len(raw.Contexts))
		for n := range raw.Contexts {
			names = append(names, n)
		}
		if r.context == "" {
			return nil, fmt.Errorf("%w: %s has no current context; pick one of %s with --context", ErrKubeconfig, r.where(), strings.Join(names, ", "))
		}
		return nil, fmt.Errorf("%w: %s has no context %q (it has %s)", ErrKubeconfig, r.where(), r.context, strings.Join(names, ", "))
	}
	if r.cfg, err = cc.ClientConfig(); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrKubeconfig, r.where(), err)
	}
	r.server = r.cfg.Host
	// Instances are few objects each; the default 5 requests a second
	// would make a wave of them wait for the client, not the server.
	r.cfg.QPS, r.cfg.Burst = 100, 200
	if r.cs, err = kubernetes.NewForConfig(r.cfg); err != nil {
		return nil, err
	}
	if r.applier, err = kubeplan.NewApplier(r.cfg); err != nil {
		return nil, err
	}
	return r, nil
}

// ForRecord returns the runtime an instance record names (for
// endpointkit.Options.RuntimeFor), with o's other settings.
func ForRecord(rec endpointkit.RuntimeRecord, o Options) (endpointkit.Runtime, error) {
	if rec.Kind != Kind {
		return nil, fmt.Errorf("unknown runtime %q in the instance record (this program knows %q)", rec.Kind, Kind)
	}
	o.Kubeconfig, o.Context = rec.Kubeconfig, rec.Context
	return New(o)
}

// RuntimeRecord is what the instance record keeps of the runtime.
func (r *Runtime) RuntimeRecord() endpointkit.RuntimeRecord {
	return endpointkit.RuntimeRecord{Kind: Kind, Kubeconfig: r.kubeconfig, Context: r.context}
}

// where names the kubeconfig and context for errors.
func (r *Runtime) where() string {
	kc := r.kubeconfig
	if kc == "" {
		kc = "the default kubeconfig ($KUBECONFIG or ~/.kube/config)"
	}
	if r.context != "" {
		return fmt.Sprintf("kubeconfig %s, context %s", kc, r.context)
	}
	return "kubeconfig " + kc
}

func (r *Runtime) log() *slog.Logger {
	if r.opts.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.opts.Logger
}

// checkTimeout bounds the first contact with the API server.
const checkTimeout = 15 * time.Second

// Check contacts the cluster and asks it (SelfSubjectAccessReview)
// whether the user may do everything an instance needs; it refuses an
// instance whose namespace exists unless replace. Nothing is created.
// Errors wrap ErrUnreachable, ErrForbidden or ErrNamespaceExists.
func (r *Runtime) Check(ctx context.Context, instance string, replace bool) error {
	cctx, cancel := context.WithTimeout(ctx, checkTimeout)
	defer cancel()
	if _, err := r.cs.Discovery().ServerVersion(); err != nil {
		return fmt.Errorf("%w: %s (%s): %v", ErrUnreachable, r.server, r.where(), err)
	}
	ns := kubeplan.Namespace(instance)
	if err := r.checkAccess(cctx, ns, func(p permission) bool { return !p.identity }); err != nil {
		return err
	}
	exists, err := r.namespaceExists(cctx, ns)
	if err != nil {
		return err
	}
	if exists && !replace {
		return r.namespaceExistsError(instance)
	}
	return nil
}

func (r *Runtime) namespaceExistsError(instance string) error {
	return fmt.Errorf("instance %s: %w: %s on %s (another machine's instance, or one whose record was lost); remove it (`kubectl delete namespace %s`) or replace it (--replace, Options.Replace)",
		instance, ErrNamespaceExists, kubeplan.Namespace(instance), r.server, kubeplan.Namespace(instance))
}

// namespaceExists reports whether the namespace is there (also while it
// terminates).
func (r *Runtime) namespaceExists(ctx context.Context, ns string) (bool, error) {
	_, err := r.cs.CoreV1().Namespaces().Get(ctx, ns, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	case apierrors.IsForbidden(err):
		return false, fmt.Errorf("%w: %v (%s)", ErrForbidden, err, r.where())
	}
	return false, fmt.Errorf("%w: %s (%s): %v", ErrUnreachable, r.server, r.where(), err)
}

// permission is one thing an instance needs the cluster to allow.
type permission struct {
	verb, group, resource, subresource string
	namespaced                         bool
	// identity: needed only by an instance with an endpoint whose image
	// takes a per-instance identity (its Secret); asked by Place.
	identity bool
}

// permissions are what Place, Ready, Reach, Console, Logs and Remove do.
var permissions = []permission{
	{verb: "get", resource: "namespaces"},
	{verb: "create", resource: "namespaces"},
	{verb: "patch", resource: "namespaces"},
	{verb: "delete", resource: "namespaces"},
	{verb: "create", resource: "serviceaccounts", namespaced: true},
	{verb: "patch", resource: "serviceaccounts", namespaced: true},
	{verb: "create", resource: "secrets", namespaced: true, identity: true},
	{verb: "patch", resource: "secrets", namespaced: true, identity: true},
	{verb: "create", resource: "pods", namespaced: true},
	{verb: "patch", resource: "pods", namespaced: true},
	{verb: "get", resource: "pods", namespaced: true},
	{verb: "watch", resource: "pods", namespaced: true},
	{verb: "list", resource: "pods", namespaced: true},
	{verb: "delete", resource: "pods", namespaced: true},
	{verb: "create", resource: "pods", subresource: "portforward", namespaced: true},
	{verb: "create", resource: "pods", subresource: "exec", namespaced: true},
	{verb: "get", resource: "pods", subresource: "log", namespaced: true},
	{verb: "list", resource: "events", namespaced: true},
	{verb: "create", resource: "configmaps", namespaced: true},
	{verb: "patch", resource: "configmaps", namespaced: true},
	{verb: "create", resource: "services", namespaced: true},
	{verb: "patch", resource: "services", namespaced: true},
	{verb: "create", group: "networking.k8s.io", resource: "networkpolicies", namespaced: true},
	{verb: "patch", group: "networking.k8s.io", resource: "networkpolicies", namespaced: true},
	{verb: "create", group: kubeplan.NADGroup, resource: kubeplan.NADResource, namespaced: true},
	{verb: "patch", group: kubeplan.NADGroup, resource: kubeplan.NADResource, namespaced: true},
	{verb: "list", group: kubeplan.NADGroup, resource: kubeplan.NADResource, namespaced: true},
}

func (p permission) String() string {
	res := p.resource
	if p.group != "" {
		res += "." + p.group
	}
	if p.subresource != "" {
		res += "/" + p.subresource
	}
	return p.verb + " " + res
}

// checkAccess asks the API server about every permission ask selects, at
// once, and lists those refused.
func (r *Runtime) checkAccess(ctx context.Context, ns string, ask func(permission) bool) error {
	refused := make([]string, len(permissions))
	g, gctx := errgroup.WithContext(ctx)
	for i, p := range permissions {
		if !ask(p) {
			continue
		}
		g.Go(func() error {
			ra := &authorizationv1.ResourceAttributes{Verb: p.verb, Group: p.group, Resource: p.resource, Subresource: p.subresource}
			if p.namespaced {
				ra.Namespace = ns
			}
			rev, err := r.cs.AuthorizationV1().SelfSubjectAccessReviews().Create(gctx,
				&authorizationv1.SelfSubjectAccessReview{Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: ra}}, metav1.CreateOptions{})
			if err != nil {
				return fmt.Errorf("%w: %s (%s): access review: %v", ErrUnreachable, r.server, r.where(), err)
			}
			if !rev.Status.Allowed {
				refused[i] = p.String()
				if p.namespaced {
					refused[i] += " in namespace " + ns
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	var list []string
	for _, s := range refused {
		if s != "" {
			list = append(list, s)
		}
	}
	if len(list) > 0 {
		return fmt.Errorf("%w: %s (%s) does not allow this user to %s", ErrForbidden, r.server, r.where(), strings.Join(list, "; "))
	}
	return nil
}

// Access says how a person reaches a presentation: through `lesson ssh`,
// or a kubectl port-forward to the presentation's Service.
func (r *Runtime) Access(instance string, ep endpointkit.RunningEndpoint, p endpointkit.Presentation) string {
	if p.Type == "ssh" {
		return "lesson ssh --instance " + instance + " " + ep.Name
	}
	ns, pod := splitPod(ep.Pod)
	return fmt.Sprintf("kubectl --context %s -n %s port-forward pod/%s 8080:%d, then http://127.0.0.1:8080/", r.context, ns, pod, p.Port)
}

// Restart is refused: restarting one endpoint (stream heal) is a feature
// of the local runtime only, for now.
func (r *Runtime) Restart(_ context.Context, _ *endpointkit.Placement, ep endpointkit.RunningEndpoint, _ bool) error {
	return fmt.Errorf("endpoint %s: restart: %w (Kubernetes restarts the container of a launcher that exits; to start an endpoint afresh, take the instance down and up)", ep.Name, ErrUnsupported)
}

// Repair is refused, as Restart.
func (r *Runtime) Repair(_ context.Context, p *endpointkit.Placement) error {
	return fmt.Errorf("instance %s: repair: %w", p.Instance, ErrUnsupported)
}

// splitPod splits NAMESPACE/NAME.
func splitPod(pod string) (ns, name string) {
	ns, name, _ = strings.Cut(pod, "/")
	return ns, name
}
