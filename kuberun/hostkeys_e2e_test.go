package kuberun_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/kubetest"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/kuberun"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// hostKeysLesson is a lesson of two endpoints, each marked by its stage 0
// over SSH: idn of an image that takes a per-instance identity, learn of
// one whose keys are learned from its console.
func hostKeysLesson(tb testing.TB) string {
	dir := tb.TempDir()
	files := map[string]string{
		"lesson.meta.yaml": `name: Host keys
slug: hostkeys
category: fundamentals
tier: local
description: An endpoint with a per-instance identity, one whose keys are learned from its console.
shortDescription: Host keys
endpoints:
  - {name: idn, image: vendor-ci, configurationType: ssh, presentations: [{name: cli, port: 22, type: ssh}]}
  - {name: learn, image: tiny, configurationType: ssh, presentations: [{name: cli, port: 22, type: ssh}]}
stages:
  - {description: Mark each endpoint, guideType: markdown}
`,
		"stage0/guide.md":         "Mark each endpoint.\n",
		"stage0/configs/idn.sh":   "#!/bin/sh\necho stage0 > /tmp/stage0\n",
		"stage0/configs/learn.sh": "#!/bin/sh\necho stage0 > /tmp/stage0\n",
	}
	for name, content := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755)
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dir
}

// TestKubernetesHostKeysPinned is issue #12's "host keys pinned as
// locally" on a real cluster. idn's image (the baked cloud-init disk)
// takes a per-instance identity: Up makes it on this machine, in the
// instance directory, and hands it to the pod as a Secret; the guest
// serves exactly its keys, and stage 0 is configured over SSH through a
// port forward with them pinned. learn's image lists no keys (the tiny
// image with its manifest's keys removed, a vendor disk's case): the
// launcher learns them from the console in the pod and the runtime reads
// them through the API server's exec. The instance reopened from its
// record (another process's view) configures again with the same keys;
// a key other than the pinned one is refused; nothing is made at the
// launchers' in-container state directories on this machine; Down leaves
// neither the namespace nor the local identity.
func TestKubernetesHostKeysPinned(t *testing.T) {
	requireCluster(t)
	t0 := time.Now()
	baked := imagetest.OCIWith(t, imagetest.Baked(t), nil)
	tiny := imagetest.Tiny(t)
	noKeys := imagetest.OCIWith(t, tiny, func(m *vmimage.Manifest) { m.HostKeys = nil })
	if baked.Manifest.Identity != vmimage.IdentityFWCfg || len(baked.Manifest.HostKeys) != 0 || len(tiny.Manifest.HostKeys) == 0 {
		t.Fatalf("images: baked identity %q with %d keys, tiny %d keys; want an identity image and a tiny image listing keys",
			baked.Manifest.Identity, len(baked.Manifest.HostKeys), len(tiny.Manifest.HostKeys))
	}
	t.Logf("images (OCI layouts) ready in %.1fs", time.Since(t0).Seconds())
	for _, ep := range []string{"idn", "learn"} {
		if _, err := os.Stat(filepath.Join(qemulaunch.DefaultStateRoot, ep)); err == nil {
			t.Fatalf("%s exists on this machine before the test: cannot prove nothing is made there", filepath.Join(qemulaunch.DefaultStateRoot, ep))
		}
	}
	cp := kubetest.StartCluster(t)
	rt, err := kuberun.New(runtimeOptions(t, cp))
	if err != nil {
		t.Fatal(err)
	}
	opts := upOptions(t, rt, map[string]string{"vendor-ci": baked.Dir, "tiny": noKeys.Dir})
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()

	t1 := time.Now()
	inst, err := endpointkit.Up(ctx, hostKeysLesson(t), opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	t.Logf("up (pushed, ready, stage 0 configured over SSH with the keys pinned) in %.1fs", time.Since(t1).Seconds())

	idn, _ := inst.Endpoint("idn")
	if idn.IdentityFile != filepath.Join(inst.Dir, "idn", vmimage.IdentityFile) {
		t.Errorf("idn's identity is recorded at %q; want it in the instance directory", idn.IdentityFile)
	}
	if st, err := os.Stat(idn.IdentityFile); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("identity file: %v (mode %v); want 0600", err, st.Mode())
	}
	id, err := vmimage.LoadIdentity(idn.IdentityFile)
	if err != nil {
		t.Fatal(err)
	}
	sec, err := cp.Clientset(t).CoreV1().Secrets(kubeplan.Namespace(opts.Instance)).Get(ctx, kubeplan.IdentitySecret("idn"), metav1.GetOptions{})
	if raw, _ := os.ReadFile(idn.IdentityFile); err != nil || string(sec.Data[vmimage.IdentityFile]) != string(raw) {
		t.Errorf("identity Secret (%v) does not hold the identity kept on this machine", err)
	}
	// The guest serves the identity's keys, and no other.
	var want []string
	for _, k := range id.HostKeys() {
		want = append(want, k.Fingerprint)
	}
	slices.Sort(want)
	res, err := inst.Run(ctx, "idn", "hostname; cat /tmp/stage0; for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k | cut -d' ' -f2; done | sort")
	if got := strings.TrimSpace(res.Output); err != nil || got != "idn\nstage0\n"+strings.Join(want, "\n") {
		t.Errorf("idn says %q (%v); want its hostname, stage 0's mark and the identity's keys %v", got, err, want)
	}
	// learn's keys were learned in the pod and read through the API server.
	learn, _ := inst.Endpoint("learn")
	learned, err := rt.HostKeys(ctx, learn, noKeys.Manifest)
	if err != nil || len(learned) == 0 || !slices.Equal(learned, tiny.Manifest.HostKeys) {
		t.Errorf("learn's keys read from the pod: %v (%v); want the guest's %v", learned, err, tiny.Manifest.HostKeys)
	}
	if res, err := inst.Run(ctx, "learn", "cat /tmp/stage0"); err != nil || strings.TrimSpace(res.Output) != "stage0" {
		t.Errorf("learn: stage 0 mark %q (%v)", res.Output, err)
	}

	// Another process: the record alone, a new runtime, the same keys.
	again, err := endpointkit.Open(inst.Dir, endpointkit.Options{RuntimeFor: func(rec endpointkit.RuntimeRecord) (endpointkit.Runtime, error) {
		return kuberun.ForRecord(rec, kuberun.Options{Logger: testLogger(t)})
	}})
	if err != nil {
		t.Fatal(err)
	}
	if err := again.Configure(ctx, 0); err != nil {
		t.Errorf("Configure(0) from the record: %v", err)
	}

	// A key other than the pinned one is refused, on both endpoints.
	other, err := vmimage.NewIdentity("idn")
	if err != nil {
		t.Fatal(err)
	}
	for _, ep := range []endpointkit.RunningEndpoint{idn, learn} {
		fctx, fcancel := context.WithTimeout(ctx, time.Minute)
		ap, err := rt.Reach(fctx, ep, 22)
		if err != nil {
			t.Fatal(err)
		}
		_, err = configure.DialSSH(fctx, configure.Target{Name: ep.Name, Address: ap.Addr().String(), Port: int(ap.Port()),
			User: "antidote", Password: "antidotepassword", HostKeys: configure.HostKeyPolicy{Pinned: other.HostKeys()}}, configure.DialOptions{})
		fcancel()
		if !errors.Is(err, configure.ErrHostKey) {
			t.Errorf("%s with another key pinned: %v; want configure.ErrHostKey", ep.Name, err)
		}
	}

	for _, ep := range []string{"idn", "learn"} {
		if _, err := os.Stat(filepath.Join(qemulaunch.DefaultStateRoot, ep)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s was made on this machine (the launcher's state directory is in the pod): %v", filepath.Join(qemulaunch.DefaultStateRoot, ep), err)
		}
	}
	if err := again.Down(ctx); err != nil {
		t.Fatalf("Down: %v", err)
	}
	if _, err := os.Stat(idn.IdentityFile); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the identity is left on this machine after Down: %v", err)
	}
	if left := nodeLeftovers(ctx, t, cp, opts.Instance); len(left) > 0 {
		t.Errorf("left after down: %s", strings.Join(left, "; "))
	}
	t.Logf("whole test body %.1fs", time.Since(t0).Seconds())
}
