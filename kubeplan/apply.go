package kubeplan

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"time"

	"golang.org/x/sync/errgroup"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side-apply field manager of endpointkit.
const FieldManager = "endpointkit"

// DefaultWorkers is how many requests an Applier has in flight.
const DefaultWorkers = 32

// resources maps each kind Render makes to its API resource.
var resources = map[string]schema.GroupVersionResource{
	"Namespace":      {Version: "v1", Resource: "namespaces"},
	"ServiceAccount": {Version: "v1", Resource: "serviceaccounts"},
	"Secret":         {Version: "v1", Resource: "secrets"},
	"Service":        {Version: "v1", Resource: "services"},
	"Pod":            {Version: "v1", Resource: "pods"},
	"ConfigMap":      {Version: "v1", Resource: "configmaps"},
	"NetworkPolicy":  {Group: "networking.k8s.io", Version: "v1", Resource: "networkpolicies"},
	NADKind:          {Group: NADGroup, Version: NADVersion, Resource: NADResource},
}

// Resource returns the API resource of a kind Render makes.
func Resource(kind string) (schema.GroupVersionResource, bool) {
	gvr, ok := resources[kind]
	return gvr, ok
}

// Waves returns the objects as unstructured data in the order they must
// be created: the namespace; then the service account, identity secrets,
// networks, services, policy and lesson ConfigMap; then the pods (the API
// server admits a pod only once its service account exists, and the
// kubelet starts it only once its volumes' secrets and ConfigMap do).
func (o *Objects) Waves() ([][]*unstructured.Unstructured, error) {
	first, err := appendObjects(nil, o.Namespace)
	if err != nil {
		return nil, err
	}
	second, err := appendObjects(nil, o.ServiceAccount)
	if err != nil {
		return nil, err
	}
	if second, err = appendObjects(second, o.Secrets...); err != nil {
		return nil, err
	}
	second = append(second, o.Networks...)
	if second, err = appendObjects(second, o.Services...); err != nil {
		return nil, err
	}
	if second, err = appendObjects(second, o.Policy); err != nil {
		return nil, err
	}
	if o.Lesson != nil {
		if second, err = appendObjects(second, o.Lesson); err != nil {
			return nil, err
		}
	}
	third, err := appendObjects(nil, o.Pods...)
	if err != nil {
		return nil, err
	}
	return [][]*unstructured.Unstructured{first, second, third}, nil
}

// appendObjects appends typed objects to dst as unstructured data.
func appendObjects[T runtime.Object](dst []*unstructured.Unstructured, objs ...T) ([]*unstructured.Unstructured, error) {
	for _, obj := range objs {
		u, err := toUnstructured(obj)
		if err != nil {
			return nil, err
		}
		dst = append(dst, u...)
	}
	return dst, nil
}

// All returns every object in creation order.
func (o *Objects) All() ([]*unstructured.Unstructured, error) {
	waves, err := o.Waves()
	if err != nil {
		return nil, err
	}
	var all []*unstructured.Unstructured
	for _, w := range waves {
		all = append(all, w...)
	}
	return all, nil
}

// WriteYAML writes every object as a YAML stream, in creation order, for
// `kubectl apply -f -` (use --server-side) or a GitOps repository.
func (o *Objects) WriteYAML(w io.Writer) error {
	all, err := o.All()
	if err != nil {
		return err
	}
	var b bytes.Buffer
	for _, u := range all {
		raw, err := yaml.Marshal(u.Object)
		if err != nil {
			return fmt.Errorf("kubeplan: %s %s: %w", u.GetKind(), u.GetName(), err)
		}
		b.WriteString("---\n")
		b.Write(raw)
	}
	_, err = w.Write(b.Bytes())
	return err
}

// toUnstructured converts a typed object, leaving out what the server sets
// (status, creationTimestamp): an apply names only the fields it owns.
func toUnstructured(obj runtime.Object) ([]*unstructured.Unstructured, error) {
	m, err := runtime.DefaultUnstructuredConverter.ToUnstructured(obj)
	if err != nil {
		return nil, err
	}
	delete(m, "status")
	if md, ok := m["metadata"].(map[string]any); ok {
		delete(md, "creationTimestamp")
	}
	return []*unstructured.Unstructured{{Object: m}}, nil
}

// Applier applies and deletes instances' objects.
type Applier struct {
	Client dynamic.Interface
	// FieldManager defaults to FieldManager.
	FieldManager string
	// Workers bounds the requests in flight; 0 means DefaultWorkers.
	Workers int
}

// NewApplier returns an Applier talking to the cluster cfg names. Set
// cfg.QPS (for example to -1, no client-side limit) to apply many
// instances quickly: client-go's default is 5 requests a second.
func NewApplier(cfg *rest.Config) (*Applier, error) {
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	return &Applier{Client: dc}, nil
}

func (a *Applier) fieldManager() string {
	if a.FieldManager != "" {
		return a.FieldManager
	}
	return FieldManager
}

func (a *Applier) workers() int {
	if a.Workers > 0 {
		return a.Workers
	}
	return DefaultWorkers
}

// Apply server-side-applies the objects of every given instance, wave by
// wave (see Objects.Waves), each wave's requests in parallel. Applying the
// same objects again changes nothing. The error names the object and the
// API server's reason (an RBAC refusal names the verb and resource).
func (a *Applier) Apply(ctx context.Context, sets ...*Objects) error {
	var waves [3][]*unstructured.Unstructured
	for _, s := range sets {
		ws, err := s.Waves()
		if err != nil {
			return err
		}
		for i, w := range ws {
			waves[i] = append(waves[i], w...)
		}
	}
	opts := metav1.ApplyOptions{FieldManager: a.fieldManager(), Force: true}
	for _, wave := range waves {
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(a.workers())
		for _, u := range wave {
			g.Go(func() error {
				ri, err := a.resource(u)
				if err != nil {
					return err
				}
				if _, err := ri.Apply(gctx, u.GetName(), u, opts); err != nil {
					return fmt.Errorf("kubeplan: apply %s %s: %w", u.GetKind(), qualified(u), err)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return err
		}
	}
	return nil
}

// resource is the client of u's kind, in u's namespace.
func (a *Applier) resource(u *unstructured.Unstructured) (dynamic.ResourceInterface, error) {
	gvr, ok := resources[u.GetKind()]
	if !ok {
		return nil, fmt.Errorf("kubeplan: %s %s: no resource known for the kind", u.GetKind(), u.GetName())
	}
	if ns := u.GetNamespace(); ns != "" {
		return a.Client.Resource(gvr).Namespace(ns), nil
	}
	return a.Client.Resource(gvr), nil
}

func qualified(u *unstructured.Unstructured) string {
	if ns := u.GetNamespace(); ns != "" {
		return ns + "/" + u.GetName()
	}
	return u.GetName()
}

// Delete deletes the namespaces of the given instances — and so everything
// in them — in parallel. A namespace already gone is not an error.
func (a *Applier) Delete(ctx context.Context, instances ...string) error {
	nss := a.Client.Resource(resources["Namespace"])
	bg := metav1.DeletePropagationBackground
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(a.workers())
	for _, inst := range instances {
		g.Go(func() error {
			err := nss.Delete(gctx, Namespace(inst), metav1.DeleteOptions{PropagationPolicy: &bg})
			if err != nil && !apierrors.IsNotFound(err) {
				return fmt.Errorf("kubeplan: delete namespace %s: %w", Namespace(inst), err)
			}
			return nil
		})
	}
	return g.Wait()
}

// WaitDeleted waits until the namespaces of the given instances are gone
// (the cluster's namespace controller removes their contents first). It
// goes by name, not by label: an instance's namespace that someone else
// made (one Options.Replace replaces) has none of endpointkit's labels.
func (a *Applier) WaitDeleted(ctx context.Context, instances ...string) error {
	want := map[string]bool{}
	for _, inst := range instances {
		want[Namespace(inst)] = true
	}
	nss := a.Client.Resource(resources["Namespace"])
	for {
		list, err := nss.List(ctx, metav1.ListOptions{})
		if err != nil {
			return fmt.Errorf("kubeplan: list namespaces: %w", err)
		}
		left := 0
		for _, n := range list.Items {
			if want[n.GetName()] {
				left++
			}
		}
		if left == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("kubeplan: %d of %d namespaces still terminating: %w", left, len(want), ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}
