package imagebuild_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/pkg/sftp"
)

// TestProvisionScript runs the script an iso image's installer runs in
// the installed system on a real Debian (the debootstrap image, as root):
// the recipe's users with their groups and password, its file with owner
// and mode, the APIs' files, the identity, readiness and bake units
// enabled, and its step, in order.
func TestProvisionScript(t *testing.T) {
	im := imagetest.Debian(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "motd"), []byte("provisioned\n"), 0o644)
	r, err := imagebuild.ParseRecipe(filepath.Join(dir, "image.yaml"), []byte(`slug: prov
kind: iso
iso: {path: motd, sha256: `+strings.Repeat("0", 64)+`, answers: {file: motd}}
users:
  - {name: antidote, password: antidotepassword, groups: [sudo]}
  - {name: ops, password: opspassword, groups: [netops]}
files:
  - {src: motd, dst: /etc/endpointkit-motd, mode: "0640", owner: "ops:netops"}
steps:
  - echo "step ran as $(id -un)" > /var/tmp/endpointkit-step
`))
	if err != nil {
		t.Fatal(err)
	}
	r.Dir = dir
	script, err := imagebuild.ProvisionScript(r)
	if err != nil {
		t.Fatal(err)
	}
	vm := imagetest.Boot(t, im, imagetest.BootOptions{})
	c := vm.SSH(t)
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("provision.sh")
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte(script))
	f.Close()
	sc.Close()
	out, errOut, err := imagetest.Run(c, "sudo -n sh provision.sh")
	if err != nil {
		t.Fatalf("provision: %v\n%s%s", err, out, errOut)
	}
	run := func(cmd string) string { t.Helper(); return imagetest.MustRun(t, c, cmd) }
	if got := run("id -Gn ops; sudo -n stat -c '%U:%G %a' /etc/endpointkit-motd; sudo -n cat /etc/endpointkit-motd; cat /var/tmp/endpointkit-step"); got != "ops netops\nops:netops 640\nprovisioned\nstep ran as root" {
		t.Errorf("users, file, step = %q", got)
	}
	if got := run("systemctl is-enabled endpointkit-identity.service endpointkit-ready.service endpointkit-bake.service | tr '\\n' ' '"); got != "enabled enabled enabled" {
		t.Errorf("units enabled = %q", got)
	}
	if got := run("test -x /usr/lib/endpointkit/identity && sudo -n cat /etc/sudoers.d/endpointkit"); !strings.Contains(got, "NOPASSWD") {
		t.Errorf("sudoers = %q", got)
	}
	if !strings.Contains(out, "endpointkit: provisioned") {
		t.Errorf("script output lacks its end:\n%s", out)
	}
}
