package registrytest_test

import (
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"testing"

	"github.com/endpointkit/endpointkit/internal/registrytest"
	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushPull pushes a random image to a plain-HTTP registry, reads it
// back by digest and finds its blobs in the registry's storage.
func TestPushPull(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{})
	img, err := random.Image(1024, 2)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(reg.Host+"/rt/img:v1", name.Insecure)
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	d, _ := img.Digest()
	back, err := remote.Image(ref.Context().Digest(d.String()))
	if err != nil {
		t.Fatal(err)
	}
	if bd, _ := back.Digest(); bd != d {
		t.Errorf("pulled %s, pushed %s", bd, d)
	}
	blobs, err := reg.Blobs()
	if err != nil || len(blobs) < 4 { // 2 layers, config, manifest
		t.Errorf("stored blobs %v (%v); want at least 4", blobs, err)
	}
	if tags, _ := reg.Tags("rt/img"); len(tags) != 1 || tags[0] != "v1" {
		t.Errorf("tags %v", tags)
	}
}

// TestTLSAuth serves HTTPS behind basic auth: anonymous is refused with
// 401, the right password and CA work.
func TestTLSAuth(t *testing.T) {
	reg := registrytest.Start(t, registrytest.Options{TLS: true, User: "u", Password: "p"})
	resp, err := reg.Client().Get(reg.URL() + "/v2/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("anonymous /v2/: %s; want 401", resp.Status)
	}
	pem, err := os.ReadFile(reg.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
	img, _ := random.Image(512, 1)
	ref, _ := name.ParseReference(reg.Host + "/rt/tls:v1")
	if err := remote.Write(ref, img, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "u", Password: "p"})); err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img, remote.WithTransport(tr), remote.WithAuth(&authn.Basic{Username: "u", Password: "wrong"})); err == nil {
		t.Error("push with a wrong password succeeded")
	}
}
