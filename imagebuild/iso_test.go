package imagebuild_test

import (
	"bufio"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
)

// isoRecipe writes an iso recipe for the ISO at isoPath (sha256 sum) and
// the preseed answers into a new directory.
func isoRecipe(t *testing.T, slug, isoPath, sum, answers, extra string) string {
	t.Helper()
	dir := t.TempDir()
	recipe := "slug: " + slug + "\nkind: iso\niso:\n  path: " + isoPath + "\n  sha256: " + sum +
		"\n  answers: {format: preseed, file: preseed.cfg}\n  timeoutMinutes: 50\n" + extra
	if err := os.WriteFile(filepath.Join(dir, imagebuild.RecipeFile), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "preseed.cfg"), []byte(answers), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// aptMirror is the Debian mirror this machine's apt uses (host and
// directory), from /etc/apt/sources.list(.d).
func aptMirror(t *testing.T) (host, dir string) {
	t.Helper()
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	for _, f := range append([]string{"/etc/apt/sources.list"}, files...) {
		fh, err := os.Open(f)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(fh)
		for sc.Scan() {
			for _, w := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(w, "http://") && strings.HasSuffix(strings.TrimSuffix(w, "/"), "/debian") {
					fh.Close()
					rest := strings.TrimPrefix(strings.TrimSuffix(w, "/"), "http://")
					h, d, _ := strings.Cut(rest, "/")
					return h, "/" + d
				}
			}
		}
		fh.Close()
	}
	t.Fatal("no http://…/debian mirror in /etc/apt/sources.list(.d)")
	return "", ""
}

// isoBaseAnswers are the answers up to the mirror: locale, keyboard,
// network (DHCP), and the mirror given.
func isoBaseAnswers(mirrorHost, mirrorDir string) string {
	return `d-i debian-installer/locale string en_US.UTF-8
d-i keyboard-configuration/xkb-keymap select us
d-i netcfg/choose_interface select auto
d-i netcfg/get_hostname string debian
d-i netcfg/get_domain string
d-i hw-detect/load_firmware boolean false
d-i mirror/country string manual
d-i mirror/http/hostname string ` + mirrorHost + `
d-i mirror/http/directory string ` + mirrorDir + `
d-i mirror/http/proxy string
`
}

// TestISOChecksumMismatch: an ISO whose sha256 is not the recipe's fails
// the build at iso.sha256 with ErrChecksum, keeps nothing in the
// raw-image store and leaves no temporary files and the previous image in
// the output directory untouched.
func TestISOChecksumMismatch(t *testing.T) {
	iso := filepath.Join(t.TempDir(), "installer.iso")
	os.WriteFile(iso, []byte("not really an ISO"), 0o644)
	dir := isoRecipe(t, "iso-bad", iso, strings.Repeat("ab", 32), "d-i x string y\n", "")
	r, err := imagebuild.LoadRecipe(dir)
	if err != nil {
		t.Fatal(err)
	}
	cache := t.TempDir()
	out := filepath.Join(t.TempDir(), "out")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "previous"), []byte("kept"), 0o644)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	imagetest.RequireBuildTools(t, "iso")
	_, err = imagebuild.New(imagebuild.Options{CacheDir: cache}).Build(ctx, r, out)
	if !errors.Is(err, imagebuild.ErrChecksum) || !strings.Contains(err.Error(), "image.yaml:5:11: iso.sha256:") {
		t.Fatalf("Build = %v; want ErrChecksum at iso.sha256", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(cache, "disks", "sha256")); len(ents) != 0 {
		t.Errorf("the store kept %d objects", len(ents))
	}
	imagetest.NoTempFiles(t, cache, filepath.Dir(out))
	if got, _ := os.ReadFile(filepath.Join(out, "previous")); string(got) != "kept" {
		t.Errorf("previous output changed: %q", got)
	}
}

// TestISOInstallerQuestion boots Debian's own installer (an ISO made from
// debian-installer-12-netboot-amd64) with answers that name a mirror that
// cannot exist: the installer fetches the answers from the builder's HTTP
// server, stops at the mirror question, and the build fails within the
// quiet period naming that question from the console, with nothing left
// behind.
func TestISOInstallerQuestion(t *testing.T) {
	ektest.RequireQEMU(t)
	iso, sum := imagetest.DebianInstallerISO(t)
	dir := isoRecipe(t, "iso-question", iso, sum, isoBaseAnswers("mirror.invalid", "/debian"), "")
	r, err := imagebuild.LoadRecipe(dir)
	if err != nil {
		t.Fatal(err)
	}
	imagetest.RequireBuildTools(t, "iso")
	cache := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	start := time.Now()
	_, err = imagebuild.New(imagebuild.Options{CacheDir: cache, NoCache: true}).BuildCached(ctx, r)
	var vmErr *imagebuild.BuildVMError
	if !errors.As(err, &vmErr) || !errors.Is(err, imagebuild.ErrBuildVM) || !strings.Contains(strings.ToLower(vmErr.Question), "mirror") {
		t.Fatalf("build = %v; want a BuildVMError naming the mirror question", err)
	}
	t.Logf("stopped after %s at: %s", time.Since(start).Round(time.Second), vmErr.Question)
	if !strings.Contains(err.Error(), "answer it in the answer file") || !strings.Contains(err.Error(), "console tail:") {
		t.Errorf("error text: %v", err)
	}
	imagetest.NoTempFiles(t, cache)
}

// TestISOInstallBoots installs Debian from Debian's own network installer
// (an ISO made from debian-installer-12-netboot-amd64) and the mirror this
// machine's apt uses, with a preseed answer file, into an image: the
// installed system is baked, boots with its own identity, antidote logs
// in over SSH and has sudo, and the recipe's self-test passes. The
// installed disk is cached by the ISO's sha256 and the answer file.
func TestISOInstallBoots(t *testing.T) {
	ektest.RequireQEMU(t)
	iso, sum := imagetest.DebianInstallerISO(t)
	host, mdir := aptMirror(t)
	requireInstallerComponents(t, host, mdir)
	answers := isoBaseAnswers(host, mdir) + `d-i passwd/root-login boolean false
d-i passwd/user-fullname string
d-i passwd/username string installer
d-i passwd/user-password password installerpassword
d-i passwd/user-password-again password installerpassword
d-i clock-setup/utc boolean true
d-i time/zone string UTC
d-i clock-setup/ntp boolean false
d-i partman-auto/method string regular
d-i partman-auto/disk string /dev/vda
d-i partman-auto/expert_recipe string root :: 1000 50 -1 ext4 $primary{ } $bootable{ } method{ format } format{ } use_filesystem{ } filesystem{ ext4 } mountpoint{ / } .
d-i partman-auto/choose_recipe select root
d-i partman-basicfilesystems/no_swap boolean false
d-i partman-partitioning/confirm_write_new_label boolean true
d-i partman/choose_partition select finish
d-i partman/confirm boolean true
d-i partman/confirm_nooverwrite boolean true
d-i base-installer/install-recommends boolean false
d-i base-installer/kernel/image string linux-image-amd64
d-i base-installer/initramfs-tools/driver-policy select dep
d-i apt-setup/use_mirror boolean true
d-i apt-setup/services-select multiselect
d-i apt-setup/non-free-firmware boolean false
tasksel tasksel/first multiselect
d-i pkgsel/run_tasksel boolean false
d-i pkgsel/include string openssh-server sudo
d-i pkgsel/upgrade select none
popularity-contest popularity-contest/participate boolean false
d-i grub-installer/only_debian boolean true
d-i grub-installer/bootdev string /dev/vda
`
	dir := isoRecipe(t, "iso-debian", iso, sum, answers, "tests:\n  - name: sudo without a password\n    run: test \"$(sudo -n id -un)\" = root\n")
	start := time.Now()
	im := imagetest.Build(t, dir)
	t.Logf("installed (or from the cache) in %s", time.Since(start).Round(time.Second))
	vm := imagetest.Boot(t, im, imagetest.BootOptions{Timeout: 5 * time.Minute})
	c := vm.SSH(t)
	if got := imagetest.MustRun(t, c, "id -un; sudo -n id -un; hostname"); got != "antidote\nroot\n"+vm.Hostname {
		t.Errorf("id, sudo id, hostname = %q", got)
	}
	runSelfTests(t, vm)
	vm.MustPowerDown(t, 2*time.Minute)
}

// requireInstallerComponents skips unless the mirror serves the Debian
// installer's own packages (.udeb), which a network install downloads.
func requireInstallerComponents(t *testing.T, host, dir string) {
	t.Helper()
	url := "http://" + host + dir + "/dists/bookworm/main/debian-installer/binary-amd64/Packages.xz"
	resp, err := http.Head(url)
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Skipf("mirror %s%s has no installer package index (%v)", host, dir, err)
	}
	// anna, the installer's package retriever, is in every release.
	probe := "http://" + host + dir + "/pool/main/a/anna/anna_1.91_amd64.udeb"
	resp, err = http.Head(probe)
	if err == nil {
		resp.Body.Close()
	}
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Skipf("mirror %s%s does not serve installer components (%s: %v %v): the network installer cannot run here", host, dir, probe, err, statusOf(resp))
	}
}

func statusOf(r *http.Response) string {
	if r == nil {
		return ""
	}
	return r.Status
}
