package kuberun_test

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
	"github.com/endpointkit/endpointkit/vmimage"
)

// HostKeys, without a cluster: a manifest's keys as they are; an identity
// image's from the identity kept on this machine, refused by name when the
// record names none or it is gone; a guest's learned keys read through the
// API server, whose failure names the pod and the command (TestKubernetes
// HostKeysPinned reads them from a real pod).
func TestHostKeysSources(t *testing.T) {
	rt, err := kuberun.New(kuberun.Options{Kubeconfig: writeKubeconfig(t, "https://127.0.0.1:1", "x", "")})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	ep := endpointkit.RunningEndpoint{Name: "r1", Pod: "ek-x/r1", StateDir: "/run/endpointkit/r1"}
	listed := []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:listed", PublicKey: "ssh-ed25519 AAAA"}}
	if keys, err := rt.HostKeys(ctx, ep, vmimage.Manifest{HostKeys: listed}); err != nil || !slices.Equal(keys, listed) {
		t.Errorf("manifest keys: %v %v", keys, err)
	}

	identity := vmimage.Manifest{Identity: vmimage.IdentityFWCfg}
	dir := t.TempDir()
	id, err := vmimage.LoadOrCreateIdentity(dir, "r1")
	if err != nil {
		t.Fatal(err)
	}
	withID := ep
	withID.IdentityFile = filepath.Join(dir, vmimage.IdentityFile)
	if keys, err := rt.HostKeys(ctx, withID, identity); err != nil || !slices.Equal(keys, id.HostKeys()) {
		t.Errorf("identity keys: %v %v; want %v", keys, err, id.HostKeys())
	}
	if _, err := rt.HostKeys(ctx, ep, identity); err == nil || !strings.Contains(err.Error(), "down and up") {
		t.Errorf("no identity recorded: %v", err)
	}
	withID.IdentityFile = filepath.Join(dir, "gone.json")
	if _, err := rt.HostKeys(ctx, withID, identity); err == nil || !strings.Contains(err.Error(), "gone.json") || !strings.Contains(err.Error(), "ek-x/r1") {
		t.Errorf("identity file gone: %v", err)
	}

	if _, err := rt.HostKeys(ctx, ep, vmimage.Manifest{}); err == nil || !strings.Contains(err.Error(), "pod ek-x/r1") || !strings.Contains(err.Error(), "hostkeys --state /run/endpointkit/r1") {
		t.Errorf("learned keys, API server unreachable: %v", err)
	}
}

// Render of an identity image (`lesson render --kubernetes`) mounts each
// endpoint's identity Secret but prints none: no private key is made up
// for an instance that is not placed.
func TestRenderIdentityImage(t *testing.T) {
	im := imagetest.CopyWith(t, imagetest.Tiny(t), func(m *vmimage.Manifest) { m.HostKeys, m.Identity = nil, vmimage.IdentityFWCfg })
	opts := endpointkit.Options{Instance: "tri", Images: endpointkit.Catalog{Images: map[string]string{"tiny": im.Dir}}}
	p, err := endpointkit.Plan(context.Background(), lessonPath(t, "linux-triangle"), opts)
	if err != nil {
		t.Fatal(err)
	}
	ref := "127.0.0.1:5000/endpointkit/tiny@sha256:" + strings.Repeat("a", 64)
	objs, err := kuberun.Render(context.Background(), p, kuberun.Options{Images: map[string]string{"tiny": ref}})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := objs.WriteYAML(&b); err != nil {
		t.Fatal(err)
	}
	if len(objs.Secrets) != 0 || strings.Contains(b.String(), "PRIVATE KEY") || strings.Contains(b.String(), "kind: Secret") {
		t.Errorf("render prints identities:\n%s", b.String())
	}
	for _, pod := range objs.Pods {
		env := map[string]string{}
		for _, e := range pod.Spec.Containers[0].Env {
			env[e.Name] = e.Value
		}
		secret := ""
		for _, v := range pod.Spec.Volumes {
			if v.Secret != nil {
				secret = v.Secret.SecretName
			}
		}
		if secret != kubeplan.IdentitySecret(pod.Name) || env["ENDPOINT_IDENTITY"] != kubeplan.IdentityDir+"/"+vmimage.IdentityFile {
			t.Errorf("pod %s: secret volume %q, ENDPOINT_IDENTITY %q", pod.Name, secret, env["ENDPOINT_IDENTITY"])
		}
	}
}
