package imagebuild_test

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// TestTinyBoots builds the tiny image, boots it under QEMU and exercises
// everything the agent promises over a real SSH connection.
func TestTinyBoots(t *testing.T) {
	im := imagetest.Tiny(t)
	share := t.TempDir()
	if err := os.WriteFile(filepath.Join(share, "lesson.txt"), []byte("from the lesson\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	vm := imagetest.Boot(t, im, imagetest.BootOptions{Share: share, DataNICs: 1})
	c := vm.SSH(t)

	run := func(cmd string) string { t.Helper(); return imagetest.MustRun(t, c, cmd) }
	if got := run("id -u"); got == "0" || got == "" {
		t.Errorf("id -u = %q; want a non-root uid", got)
	}
	if got := run("id -Gn"); !strings.Contains(got, "sudo") {
		t.Errorf("id -Gn = %q; want group sudo", got)
	}
	if got := run("hostname"); got != vm.Hostname {
		t.Errorf("hostname = %q; want %q (from endpointkit.hostname=)", got, vm.Hostname)
	}
	if got := run("sudo -n id -u"); got != "0" {
		t.Errorf("sudo -n id -u = %q; want 0", got)
	}
	if got := run("cat /run/endpointkit/dhcp.eth0"); !strings.Contains(got, "ip=10.0.2.15") {
		t.Errorf("DHCP lease = %q; want ip=10.0.2.15", got)
	}
	run("sudo ip addr add 10.11.0.15/24 dev eth1")
	if got := run("ping -c 1 -W 5 -I eth1 10.11.0.2"); !strings.Contains(got, "1 packets received") {
		t.Errorf("ping over eth1 as antidote: %q", got)
	}
	if got := run("cat /antidote/lesson.txt"); got != "from the lesson" {
		t.Errorf("/antidote/lesson.txt = %q", got)
	}

	// Environment and exit status.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Setenv("EK_TEST", "hello"); err != nil {
		t.Fatal(err)
	}
	out, err := s.Output(`echo "$EK_TEST"; exit 7`)
	var ee *ssh.ExitError
	if !errors.As(err, &ee) || ee.ExitStatus() != 7 || strings.TrimSpace(string(out)) != "hello" {
		t.Errorf("env + exit 7: out %q err %v; want hello and exit status 7", out, err)
	}

	// A shell on a pty.
	s, err = c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RequestPty("xterm", 40, 100, ssh.TerminalModes{}); err != nil {
		t.Fatal(err)
	}
	out, err = s.Output("tty; echo $TERM")
	if err != nil || !strings.Contains(string(out), "/dev/pts/") || !strings.Contains(string(out), "xterm") {
		t.Errorf("pty: out %q err %v; want /dev/pts/N and xterm", out, err)
	}

	// sftp: upload, download, ownership.
	sc, err := sftp.NewClient(c)
	if err != nil {
		t.Fatalf("sftp: %v", err)
	}
	defer sc.Close()
	f, err := sc.Create("uploaded.txt")
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(f, "payload over sftp\n")
	f.Close()
	if got := run("cat ~/uploaded.txt; stat -c %U ~/uploaded.txt"); got != "payload over sftp\n"+im.Manifest.Users.SSHUser {
		t.Errorf("uploaded file and owner = %q", got)
	}
	rf, err := sc.Open("/etc/hostname")
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(rf)
	rf.Close()
	if strings.TrimSpace(string(raw)) != vm.Hostname {
		t.Errorf("sftp read /etc/hostname = %q", raw)
	}
	if _, err := sc.Create("/root/forbidden"); err == nil {
		t.Error("sftp created /root/forbidden: the sftp server does not run as the user")
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := vm.PowerDown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Exited(); err != nil {
		t.Errorf("qemu exit: %v", err)
	}
	if !strings.Contains(vm.Console(), "endpointkit: power off") {
		t.Errorf("console lacks the clean power-off line:\n%s", vm.Console())
	}
	if pids, _ := ektest.ProcessesMatching("qemu-system", vm.SSHAddr); len(pids) > 0 {
		t.Errorf("qemu still running: %v", pids)
	}
}

// BenchmarkTinyBoot measures start-to-serial-marker and start-to-SSH-login
// of the tiny image booted as a PVH vmlinux as the manifest says, against,
// in the same run, the same image without its boot tuning (QEMU's default
// CPU without RDRAND, the kernel command line without cryptomgr.notests
// and acpi=noirq) and the same kernel as the compressed bzImage Debian
// ships. The agent prints its steps (endpointkit.debug): guest-init-s and
// guest-ready-s are the guest kernel's uptime when /init started and when
// the agent printed the marker; the rest of marker-s is QEMU's own start.
func BenchmarkTinyBoot(b *testing.B) {
	im := imagetest.Tiny(b)
	bz, _ := filepath.Glob(filepath.Join(ektest.CacheDir(b), "imagebuild", "kernels", "*", "boot", "vmlinuz-"+im.Manifest.KernelVersion))
	var untuned []string
	for _, p := range strings.Fields(im.Manifest.Cmdline) {
		if p != "cryptomgr.notests" && p != "acpi=noirq" {
			untuned = append(untuned, p)
		}
	}
	variants := []struct {
		name string
		opts imagetest.BootOptions
	}{
		{"pvh-vmlinux", imagetest.BootOptions{}},
		{"pvh-untuned", imagetest.BootOptions{CPU: "qemu64", Cmdline: strings.Join(untuned, " ")}},
	}
	if len(bz) > 0 {
		variants = append(variants, struct {
			name string
			opts imagetest.BootOptions
		}{"bzimage", imagetest.BootOptions{Kernel: bz[0]}})
	}
	ssh := map[string]float64{}
	for _, v := range variants {
		b.Run(v.name, func(b *testing.B) {
			var ready, login time.Duration
			var init, guestReady float64
			for i := 0; i < b.N; i++ {
				opts := v.opts
				opts.Debug = true
				vm := imagetest.Boot(b, im, opts)
				ready += vm.ReadyAfter
				login += vm.SSHAfter
				steps := vm.Steps()
				init += steps["init started"]
				guestReady += steps["ready"]
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				vm.PowerDown(ctx)
				cancel()
			}
			n := float64(b.N)
			b.ReportMetric(ready.Seconds()/n, "marker-s")
			b.ReportMetric(login.Seconds()/n, "ssh-s")
			b.ReportMetric(init/n, "guest-init-s")
			b.ReportMetric(guestReady/n, "guest-ready-s")
			ssh[v.name] = login.Seconds() / n
		})
	}
	if ssh["pvh-vmlinux"] > 0 && ssh["bzimage"] > 0 {
		b.Logf("boot-to-SSH ratio bzImage/PVH: %.2f", ssh["bzimage"]/ssh["pvh-vmlinux"])
	}
	if ssh["pvh-vmlinux"] > 0 && ssh["pvh-untuned"] > 0 {
		b.Logf("boot-to-SSH ratio untuned/tuned: %.2f", ssh["pvh-untuned"]/ssh["pvh-vmlinux"])
	}
}
