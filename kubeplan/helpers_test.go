package kubeplan

import (
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/wiring"
)

// lessonDir is an example lesson of the repository.
func lessonDir(name string) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "examples", "lessons", name)
}

// loadLesson plans a lesson of the repository as an instance.
func loadLesson(tb testing.TB, name, instance string) (*endpoint.Model, *wiring.Plan) {
	tb.Helper()
	l, err := lessonmeta.Load(lessonDir(name), lessonmeta.Options{})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := endpoint.Build(l, nil)
	if err != nil {
		tb.Fatal(err)
	}
	p, err := wiring.NewPlan(m, wiring.Options{Instance: instance})
	if err != nil {
		tb.Fatal(err)
	}
	return m, p
}

// digest is a made-up sha256 digest built from s.
func digest(s string) string {
	return "@sha256:" + strings.Repeat(s, 64)[:64]
}

// testImages gives every image of m a registry reference.
func testImages(m *endpoint.Model) map[string]Image {
	imgs := map[string]Image{}
	for _, ep := range m.Endpoints {
		imgs[ep.Image] = Image{Ref: "127.0.0.1:5000/endpointkit/" + ep.Image + digest("a"), Ports: []int{22, 830}, MemoryMiB: 256}
	}
	return imgs
}
