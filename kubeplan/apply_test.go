package kubeplan

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// resourceVersions reads every object of objs back from the server.
func resourceVersions(ctx context.Context, t *testing.T, a *Applier, objs *Objects) map[string]*unstructured.Unstructured {
	t.Helper()
	all, err := objs.All()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*unstructured.Unstructured{}
	for _, u := range all {
		ri, err := a.resource(u)
		if err != nil {
			t.Fatal(err)
		}
		live, err := ri.Get(ctx, u.GetName(), metav1.GetOptions{})
		if err != nil {
			t.Fatalf("%s %s: %v", u.GetKind(), qualified(u), err)
		}
		got[u.GetKind()+"/"+qualified(u)] = live
	}
	return got
}

// TestApply applies an instance to a real API server: every object
// arrives, owned by one field manager; applying it again changes nothing;
// a new stage changes only the namespace's label; a user without rights is
// told which verb on which resource was refused; deleting it removes the
// namespace.
func TestApply(t *testing.T) {
	cp := kubetest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	a, err := NewApplier(cp.RESTConfig())
	if err != nil {
		t.Fatal(err)
	}
	m, p := loadLesson(t, "linux-triangle", ektest.Name("kt"))
	o := Options{Images: testImages(m), LessonImage: "127.0.0.1:5000/endpointkit/lesson" + digest("b")}
	objs, err := Render(m, p, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	first := resourceVersions(ctx, t, a, objs)
	if len(first) != 12 {
		t.Errorf("%d objects on the server, want 12", len(first))
	}
	for key, u := range first {
		mf := u.GetManagedFields()
		if len(mf) != 1 || mf[0].Manager != FieldManager || mf[0].Operation != metav1.ManagedFieldsOperationApply {
			t.Errorf("%s: managed fields %+v, want one %q Apply entry", key, mf, FieldManager)
		}
	}
	pod := first["Pod/"+objs.Namespace.Name+"/r2"]
	if ann := pod.GetAnnotations()[NetworksAnnotation]; !strings.Contains(ann, `"interface":"eth2"`) {
		t.Errorf("r2's networks annotation on the server: %s", ann)
	}

	if err := a.Apply(ctx, objs); err != nil {
		t.Fatal(err)
	}
	for key, u := range resourceVersions(ctx, t, a, objs) {
		if rv := first[key].GetResourceVersion(); u.GetResourceVersion() != rv {
			t.Errorf("re-apply changed %s (resourceVersion %s → %s)", key, rv, u.GetResourceVersion())
		}
	}

	o.Stage = 1
	staged, err := Render(m, p, o)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Apply(ctx, staged); err != nil {
		t.Fatal(err)
	}
	for key, u := range resourceVersions(ctx, t, a, staged) {
		changed := u.GetResourceVersion() != first[key].GetResourceVersion()
		if isNS := u.GetKind() == "Namespace"; changed != isNS {
			t.Errorf("stage 1: %s changed = %v", key, changed)
		}
		if u.GetKind() == "Namespace" && u.GetLabels()[LabelStage] != "1" {
			t.Errorf("namespace labels %v", u.GetLabels())
		}
	}

	nobody := cp.RESTConfig()
	nobody.BearerToken = cp.NobodyToken
	na, err := NewApplier(nobody)
	if err != nil {
		t.Fatal(err)
	}
	err = na.Apply(ctx, objs)
	if !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), `cannot patch resource "namespaces"`) {
		t.Errorf("apply without rights: err = %v, want a Forbidden naming the verb and resource", err)
	}

	if err := a.Delete(ctx, p.Instance); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitDeleted(ctx, p.Instance); err != nil {
		t.Fatal(err)
	}
	if err := a.Delete(ctx, p.Instance); err != nil {
		t.Errorf("deleting a deleted instance: %v", err)
	}
}
