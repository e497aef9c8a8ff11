package imagebuild_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/pkg/sftp"
)

// TestDebianBoots builds (once, cached) and boots the debootstrap image:
// antidote logs in over SSH with the manifest's host keys, sudo needs no
// password, eth0 got a DHCP lease, the lesson share is mounted, data NICs
// are up, sftp works, and the ACPI power button shuts it down cleanly.
func TestDebianBoots(t *testing.T) {
	im := imagetest.Debian(t)
	share := t.TempDir()
	os.WriteFile(filepath.Join(share, "lesson.txt"), []byte("shared\n"), 0o644)
	// A cloud-init seed as a second disk: the guest kernel must read the
	// generated ISO 9660 (label cidata, Joliet names).
	seedRecipe, err := imagebuild.ParseRecipe("image.yaml", []byte("slug: seeded\nkind: initramfs\n"))
	if err != nil {
		t.Fatal(err)
	}
	seedRecipe.Resolve()
	iso, err := imagebuild.SeedISO(seedRecipe, "iid-test")
	if err != nil {
		t.Fatal(err)
	}
	seed := filepath.Join(t.TempDir(), "seed.iso")
	os.WriteFile(seed, iso, 0o644)
	vm := imagetest.Boot(t, im, imagetest.BootOptions{Share: share, DataNICs: 1, Drives: []string{seed}})
	c := vm.SSH(t)
	run := func(cmd string) string { t.Helper(); return imagetest.MustRun(t, c, cmd) }
	if got := run("id -un; id -u"); got == "antidote\n0" || !strings.HasPrefix(got, "antidote\n") {
		t.Errorf("id = %q; want antidote, not root", got)
	}
	run("sudo -n true")
	if got := run("hostname"); got != vm.Hostname {
		t.Errorf("hostname = %q; want %q", got, vm.Hostname)
	}
	if got := run("ip -4 -o addr show dev eth0"); !strings.Contains(got, "10.0.2.15/24") || !strings.Contains(got, "dynamic") {
		t.Errorf("eth0 = %q; want a dynamic (DHCP) 10.0.2.15/24", got)
	}
	if got := run("cat /var/lib/dhcp/dhclient.eth0.leases"); !strings.Contains(got, "fixed-address 10.0.2.15") {
		t.Errorf("dhclient lease = %q", got)
	}
	if got := run("cat /antidote/lesson.txt"); got != "shared" {
		t.Errorf("/antidote/lesson.txt = %q", got)
	}
	if got := run("ip -o link show dev eth1"); !strings.Contains(got, "state UP") {
		t.Errorf("eth1 = %q; want UP", got)
	}
	if got := run("systemctl is-system-running || true"); got != "running" {
		t.Errorf("systemctl is-system-running = %q; failed units: %s", got, run("systemctl --failed --no-legend"))
	}
	if got := run("sudo blkid -o export /dev/vdb"); !strings.Contains(got, "LABEL=cidata") || !strings.Contains(got, "TYPE=iso9660") {
		t.Errorf("blkid seed = %q", got)
	}
	if got := run("sudo mount -o ro /dev/vdb /mnt && cat /mnt/meta-data /mnt/user-data && sudo umount /mnt"); !strings.Contains(got, "instance-id: iid-test") || !strings.Contains(got, "plain_text_passwd: antidotepassword") {
		t.Errorf("seed content in the guest = %q", got)
	}
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatal(err)
	}
	f, err := sc.Create("via-sftp.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "ok")
	f.Close()
	sc.Close()
	if got := run("cat via-sftp.txt"); got != "ok" {
		t.Errorf("sftp upload = %q", got)
	}
	runSelfTests(t, vm)
	vm.MustPowerDown(t, 90*time.Second)
}

// BenchmarkDebianBoot boots the debootstrap image alternately with its
// command line (trimmed, DebianBootTrim) and without the trim, and
// reports QEMU start to the serial marker and to the first SSH login of
// each; systemd-analyze of the last boot of each says where the time
// went.
func BenchmarkDebianBoot(b *testing.B) {
	im := imagetest.Debian(b)
	trim := map[string]bool{}
	for _, p := range imagebuild.DebianBootTrim() {
		trim[p] = true
	}
	var untrimmed []string
	for _, p := range strings.Fields(im.Manifest.Cmdline) {
		if !trim[p] {
			untrimmed = append(untrimmed, p)
		}
	}
	variants := []struct {
		name    string
		cmdline string
	}{{"untrimmed", strings.Join(untrimmed, " ")}, {"trimmed", ""}}
	ready, login := make([]time.Duration, len(variants)), make([]time.Duration, len(variants))
	analyze := make([]string, len(variants))
	for i := 0; i < b.N; i++ {
		for k, v := range variants {
			vm := imagetest.Boot(b, im, imagetest.BootOptions{Cmdline: v.cmdline, Timeout: 10 * time.Minute})
			ready[k] += vm.ReadyAfter
			login[k] += vm.SSHAfter
			c := vm.SSH(b)
			analyze[k], _, _ = imagetest.Run(c, "systemd-analyze time; systemd-analyze critical-chain ssh.service | tail -n +4; systemd-analyze blame | head -8")
			c.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			vm.PowerDown(ctx)
			cancel()
		}
	}
	n := float64(b.N)
	for k, v := range variants {
		b.ReportMetric(ready[k].Seconds()/n, v.name+"-marker-s")
		b.ReportMetric(login[k].Seconds()/n, v.name+"-ssh-s")
		b.Logf("%s, last boot:\n%s", v.name, analyze[k])
	}
	b.ReportMetric(login[0].Seconds()/login[1].Seconds(), "x-untrimmed-ssh")
}
