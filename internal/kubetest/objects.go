package kubetest

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"
)

// FieldManager is the server-side-apply field manager of the harness.
const FieldManager = "endpointkit-kubetest"

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// InstallCRD applies the CustomResourceDefinition in the YAML file path and
// waits until the API server reports it Established.
func InstallCRD(ctx context.Context, cfg *rest.Config, path string) error {
	raw, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var obj unstructured.Unstructured
	if err := yaml.Unmarshal(raw, &obj.Object); err != nil {
		return fmt.Errorf("kubetest: %s: %w", path, err)
	}
	if obj.GetKind() != "CustomResourceDefinition" {
		return fmt.Errorf("kubetest: %s: kind %q, want CustomResourceDefinition", path, obj.GetKind())
	}
	dc, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return err
	}
	crds := dc.Resource(crdResource)
	data, err := obj.MarshalJSON()
	if err != nil {
		return err
	}
	force := true
	if _, err := crds.Patch(ctx, obj.GetName(), types.ApplyPatchType, data, metav1.PatchOptions{FieldManager: FieldManager, Force: &force}); err != nil {
		return fmt.Errorf("kubetest: install CRD %s: %w", obj.GetName(), err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		got, err := crds.Get(ctx, obj.GetName(), metav1.GetOptions{})
		if err == nil && established(got) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: CRD %s not established after 60s (last error: %v)", obj.GetName(), err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func established(crd *unstructured.Unstructured) bool {
	conds, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
	for _, c := range conds {
		m, ok := c.(map[string]any)
		if ok && m["type"] == "Established" && m["status"] == "True" {
			return true
		}
	}
	return false
}

// EnsureServiceAccount creates the `default` ServiceAccount of namespace ns
// unless it exists: the controller-manager's ServiceAccount controller
// would, and the API server refuses a pod whose service account is
// missing. Its token is never mounted.
func EnsureServiceAccount(ctx context.Context, cs kubernetes.Interface, ns string) error {
	no := false
	sa := &corev1.ServiceAccount{
		ObjectMeta:                   metav1.ObjectMeta{Name: "default", Namespace: ns},
		AutomountServiceAccountToken: &no,
	}
	_, err := cs.CoreV1().ServiceAccounts(ns).Create(ctx, sa, metav1.CreateOptions{})
	if err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("kubetest: service account %s/default: %w", ns, err)
	}
	return nil
}
