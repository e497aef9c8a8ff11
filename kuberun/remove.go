package kuberun

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit/kubeplan"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// Label of the pods that remove an instance's bridges from a node.
const (
	labelRole   = "endpointkit.io/role"
	roleCleanup = "node-cleanup"
)

// cleanupTimeout bounds a node clean-up pod's run.
const cleanupTimeout = 2 * time.Minute

// Remove removes the instance whose state directory is dir (its
// namespace is named after the directory): see remove.
func (r *Runtime) Remove(ctx context.Context, dir string, grace time.Duration) error {
	return r.remove(ctx, filepath.Base(dir), grace)
}

// remove deletes the instance's pods (each launcher gets grace to power
// its guest off; the kubelet tears their networks down while the
// NetworkAttachmentDefinitions still exist), waits until they are gone,
// removes the instance's link bridges from every node that ran its pods
// (the bridge CNI plugin never deletes a bridge: a short host-network pod
// per node runs `endpoint remove-bridges` from the endpoint image already
// there), then deletes the namespace and waits until it is gone. An
// instance without a namespace is not an error.
func (r *Runtime) remove(ctx context.Context, instance string, grace time.Duration) error {
	ns := kubeplan.Namespace(instance)
	exists, err := r.namespaceExists(ctx, ns)
	if err != nil || !exists {
		return err
	}
	pods, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("instance %s: %w", instance, forbidden(err))
	}
	nodes, image := map[string]bool{}, ""
	for _, p := range pods.Items {
		if p.Labels[labelRole] == roleCleanup {
			continue
		}
		if p.Spec.NodeName != "" {
			nodes[p.Spec.NodeName] = true
		}
		for _, cs := range p.Status.ContainerStatuses {
			if cs.Name == container && cs.ImageID != "" && image == "" {
				image = cs.Image
				for _, c := range p.Spec.Containers {
					if c.Name == container {
						image = c.Image // by digest, as applied
					}
				}
			}
		}
	}
	bridges, err := r.bridges(ctx, ns)
	if err != nil {
		return fmt.Errorf("instance %s: %w", instance, err)
	}
	var errs []error
	if err := r.deletePods(ctx, ns, pods.Items, grace); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", instance, err))
	}
	if len(bridges) > 0 && len(nodes) > 0 {
		if image == "" {
			r.log().Warn("no endpoint image was pulled on the nodes; their link bridges stay", "instance", instance, "bridges", bridges)
		}
		for node := range nodes {
			if image == "" {
				break
			}
			if err := r.cleanNode(ctx, ns, node, image, bridges); err != nil {
				errs = append(errs, fmt.Errorf("instance %s: node %s: %w", instance, node, err))
			}
		}
	}
	if err := r.applier.Delete(ctx, instance); err != nil {
		return errors.Join(append(errs, fmt.Errorf("instance %s: %w", instance, forbidden(err)))...)
	}
	if err := r.applier.WaitDeleted(ctx, instance); err != nil {
		errs = append(errs, fmt.Errorf("instance %s: %w", instance, err))
	}
	return errors.Join(errs...)
}

// bridges lists the bridges of the instance's NetworkAttachmentDefinitions.
func (r *Runtime) bridges(ctx context.Context, ns string) ([]string, error) {
	gvr, _ := kubeplan.Resource(kubeplan.NADKind)
	list, err := r.applier.Client.Resource(gvr).Namespace(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, forbidden(err)
	}
	seen := map[string]bool{}
	for _, u := range list.Items {
		if b := nadBridge(&u); b != "" {
			seen[b] = true
		}
	}
	out := make([]string, 0, len(seen))
	for b := range seen {
		out = append(out, b)
	}
	sort.Strings(out)
	return out, nil
}

// nadBridge is the bridge of a bridge-CNI NetworkAttachmentDefinition.
func nadBridge(u *unstructured.Unstructured) string {
	raw, _, _ := unstructured.NestedString(u.Object, "spec", "config")
	var cfg struct{ Type, Bridge string }
	if json.Unmarshal([]byte(raw), &cfg) != nil || cfg.Type != "bridge" {
		return ""
	}
	return cfg.Bridge
}

// deletePods deletes the pods with grace (at least a second: a zero grace
// would drop them from the API before the kubelet has torn down their
// networks) and waits until they are gone.
func (r *Runtime) deletePods(ctx context.Context, ns string, pods []corev1.Pod, grace time.Duration) error {
	secs := int64(max(1, math.Ceil(grace.Seconds())))
	for _, p := range pods {
		err := r.cs.CoreV1().Pods(ns).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &secs})
		if err != nil && !apierrors.IsNotFound(err) {
			return forbidden(err)
		}
	}
	for {
		left, err := r.cs.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
		if err != nil {
			return forbidden(err)
		}
		if len(left.Items) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			names := make([]string, len(left.Items))
			for i, p := range left.Items {
				names[i] = p.Name
			}
			return fmt.Errorf("pods %s still terminating: %w", strings.Join(names, ", "), ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// cleanNode runs `endpoint remove-bridges` on the node in a host-network
// pod and waits until it has ended.
func (r *Runtime) cleanNode(ctx context.Context, ns, node, image string, bridges []string) error {
	sum := sha256.Sum256([]byte(node))
	name := "ek-cleanup-" + hex.EncodeToString(sum[:4])
	no, yes, zero := false, true, int64(0)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns,
			Labels: map[string]string{kubeplan.LabelManagedBy: kubeplan.ManagedBy, labelRole: roleCleanup}},
		Spec: corev1.PodSpec{
			NodeName:                      node,
			HostNetwork:                   true,
			RestartPolicy:                 corev1.RestartPolicyNever,
			ServiceAccountName:            kubeplan.ServiceAccountName,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			TerminationGracePeriodSeconds: &zero,
			Tolerations:                   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
			Containers: []corev1.Container{{
				Name:            "remove-bridges",
				Image:           image,
				Command:         append([]string{kubeletLauncher, "remove-bridges"}, bridges...),
				SecurityContext: &corev1.SecurityContext{Privileged: &yes},
			}},
		},
	}
	pods := r.cs.CoreV1().Pods(ns)
	if _, err := pods.Create(ctx, pod, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return forbidden(err)
	}
	cctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	var last *corev1.Pod
	for {
		p, err := pods.Get(cctx, name, metav1.GetOptions{})
		if err == nil {
			last = p
			if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
				break
			}
		}
		select {
		case <-cctx.Done():
			return fmt.Errorf("bridges %s: clean-up pod %s not done after %v (phase %s)", strings.Join(bridges, ", "), name, cleanupTimeout, phase(last))
		case <-time.After(200 * time.Millisecond):
		}
	}
	var err error
	if last.Status.Phase == corev1.PodFailed {
		raw, _ := pods.GetLogs(name, &corev1.PodLogOptions{}).DoRaw(ctx)
		err = fmt.Errorf("bridges %s: clean-up pod %s failed: %s", strings.Join(bridges, ", "), name, strings.TrimSpace(string(raw)))
	}
	zeroGrace := int64(0)
	pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zeroGrace})
	return err
}

func phase(p *corev1.Pod) string {
	if p == nil {
		return "not created"
	}
	return string(p.Status.Phase)
}
