package endpointkit

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// imageWithKeys is a copy of the tiny image (its files linked) whose
// manifest lists keys instead of its own.
func imageWithKeys(t *testing.T, keys []vmimage.HostKey) (string, []vmimage.HostKey) {
	t.Helper()
	return tinyWith(t, func(m *vmimage.Manifest) { m.HostKeys = keys })
}

// tinyWith is a copy of the tiny image (its files linked) whose manifest
// change changed, and the keys the tiny image lists.
func tinyWith(t *testing.T, change func(*vmimage.Manifest)) (string, []vmimage.HostKey) {
	t.Helper()
	src := imagetest.Tiny(t)
	dir := filepath.Join(t.TempDir(), "tiny")
	os.MkdirAll(dir, 0o755)
	ents, _ := os.ReadDir(src.Dir)
	for _, e := range ents {
		if e.Name() != "manifest.json" {
			if err := os.Symlink(filepath.Join(src.Dir, e.Name()), filepath.Join(dir, e.Name())); err != nil {
				t.Fatal(err)
			}
		}
	}
	m := src.Manifest
	change(&m)
	raw, _ := json.MarshalIndent(m, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "manifest.json"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, src.Manifest.HostKeys
}

// Host keys never taken on trust, on the launcher's and the learner's
// paths: an image listing no keys has its guest's learned from the console
// and pinned (known_hosts, lesson ssh, the OpenSSH command line all accept
// the guest); a pinned key the guest does not have is refused by lesson
// ssh, by the OpenSSH command line and by the launcher's readiness.
func TestHostKeysLearnedAndPinned(t *testing.T) {
	requireLaunch(t)
	ektest.RequireTool(t, "sshpass", "ssh")
	dir, real := imageWithKeys(t, nil)
	opts := testOptions(t, map[string]string{"tiny": dir})
	downAtEnd(t, opts)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, singleLesson(t), opts)
	if err != nil {
		t.Fatalf("Up of an image listing no host keys: %v", err)
	}
	r1, _ := inst.Endpoint("r1")
	learned := qemulaunch.PinnedHostKeys(qemulaunch.StateDir(r1.StateDir), vmimage.Manifest{})
	if len(learned) != 1 || learned[0].Fingerprint != real[0].Fingerprint {
		t.Fatalf("learned %+v; the guest's key is %+v", learned, real)
	}
	kh, _ := os.ReadFile(filepath.Join(inst.Dir, KnownHostsFile))
	if !strings.Contains(string(kh), real[0].PublicKey) {
		t.Errorf("known_hosts lacks the learned key:\n%s", kh)
	}
	openssh := func() (string, error) {
		access := strings.Fields(r1.Presentations[0].Access) // ssh -o … user@address
		args := append([]string{"-p", "antidotepassword", "ssh", "-o", "ConnectTimeout=20"}, access[1:]...)
		out, err := exec.CommandContext(ctx, "sshpass", append(args, "echo", "logged-in")...).CombinedOutput()
		return string(out), err
	}
	if out, err := openssh(); err != nil || !strings.Contains(out, "logged-in") {
		t.Errorf("%s: %v\n%s", r1.Presentations[0].Access, err, out)
	}
	if _, err := inst.Run(ctx, "r1", "true"); err != nil {
		t.Errorf("lesson ssh with the learned key: %v", err)
	}

	// Another key pinned than the guest's: refused.
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	sp, _ := ssh.NewPublicKey(pub)
	wrong := vmimage.HostKey{Type: sp.Type(), Fingerprint: ssh.FingerprintSHA256(sp), PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}
	raw, _ := json.Marshal([]vmimage.HostKey{wrong})
	if err := os.WriteFile(qemulaunch.StateDir(r1.StateDir).HostKeys(), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	images, _ := loadImagesOf(inst)
	if err := inst.writeKnownHosts(ctx, images); err != nil {
		t.Fatal(err)
	}
	if _, err := inst.Run(ctx, "r1", "true"); !errors.Is(err, configure.ErrHostKey) {
		t.Errorf("lesson ssh with a wrong key: %v; want configure.ErrHostKey", err)
	}
	if out, err := openssh(); err == nil || !strings.Contains(out, "Host key verification failed") {
		t.Errorf("OpenSSH with a wrong key: %v\n%s", err, out)
	}

	// The launcher's readiness with a wrong key in the manifest.
	wrongDir, _ := imageWithKeys(t, []vmimage.HostKey{wrong})
	o2 := testOptions(t, map[string]string{"tiny": wrongDir})
	o2.ReadyTimeout = 3 * time.Minute
	_, err = Up(ctx, singleLesson(t), o2)
	var be *BootError
	if !errors.As(err, &be) || !strings.Contains(err.Error(), "is not one the image manifest lists") {
		t.Errorf("Up with a wrong pinned key: %v; want a BootError: the host key is not the manifest's", err)
	}
	assertClean(t, o2, "")
}

// loadImagesOf loads the images of a running instance.
func loadImagesOf(inst *Instance) (imageMetas, error) {
	_, _, images, err := loadModel(inst.LessonDir, inst.Name, inst.imageDirs())
	return images, err
}
