package imagebuild_test

import (
	"context"
	"io"
	"net"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// TestBakedDiskBoots bakes the cloud-init vendor disk (its first boot —
// users, steps, cloud-init itself — runs once at build time and is saved
// into the disk), then boots two instances of the baked image without a
// seed: each gets its own hostname, SSH host keys and machine-id from its
// identity (fw_cfg), the first-boot step's work is there and cloud-init
// does not run again. An instance without an identity has no host keys
// and no sshd (fail closed). It logs the first-boot-to-SSH time of the
// unbaked image (seed, cloud-init at every boot) and of the baked one,
// measured in the same run.
func TestBakedDiskBoots(t *testing.T) {
	ektest.RequireQEMU(t)
	vendor, sum := imagetest.CloudInitDisk(t)
	bakedDir, _ := imagetest.CloudInitRecipe(t, "path: "+vendor, sum, "")
	start := time.Now()
	baked := imagetest.Build(t, bakedDir)
	t.Logf("baked image built (or from the cache) in %s", time.Since(start).Round(100*time.Millisecond))
	m := baked.Manifest
	if m.Seed != "" || len(m.HostKeys) != 0 || m.Identity != vmimage.IdentityFWCfg || !strings.Contains(m.Readiness.SerialRegex, "endpointkit: ready") {
		t.Fatalf("baked manifest: seed %q, %d host keys, identity %q, readiness %q; want no seed, no keys, fw_cfg identity, the ready marker",
			m.Seed, len(m.HostKeys), m.Identity, m.Readiness.SerialRegex)
	}
	unbakedDir, _ := imagetest.CloudInitRecipe(t, "path: "+vendor, sum, "bake: false\n")
	unbaked := imagetest.Build(t, unbakedDir)

	before := imagetest.Boot(t, unbaked, imagetest.BootOptions{Timeout: 6 * time.Minute})
	before.MustPowerDown(t, 2*time.Minute)

	type instance struct{ hostname, machineID, hostKeys string }
	var got []instance
	var sshAfter []time.Duration
	for _, name := range []string{"baked-a", "baked-b"} {
		vm := imagetest.Boot(t, baked, imagetest.BootOptions{Hostname: name, Timeout: 4 * time.Minute})
		sshAfter = append(sshAfter, vm.SSHAfter)
		c := vm.SSH(t) // pinned to this instance's identity keys only
		run := func(cmd string) string { t.Helper(); return imagetest.MustRun(t, c, cmd) }
		got = append(got, instance{run("hostname"), run("cat /etc/machine-id"),
			run("for k in /etc/ssh/ssh_host_*_key.pub; do ssh-keygen -lf $k | cut -d' ' -f2; done | sort | tr '\\n' ' '")})
		if got := run("cat /var/lib/endpointkit-firstboot"); got != "ran as root on vendor-ci" {
			t.Errorf("%s: the first-boot step's file says %q; want the bake's", name, got)
		}
		if got := run("test -e /etc/cloud/cloud-init.disabled && ls /dev/vdb 2>/dev/null | wc -l; systemctl is-active cloud-init.service || true"); got != "0\ninactive" {
			t.Errorf("%s: cloud-init disabled / no seed disk / cloud-init inactive = %q; want 0 and inactive", name, got)
		}
		if got := run("id -un; sudo -n id -un"); got != "antidote\nroot" {
			t.Errorf("%s: id, sudo id = %q", name, got)
		}
		if got := run("getent hosts " + name + " | wc -l"); got != "1" {
			t.Errorf("%s: /etc/hosts has %s entries for the hostname", name, got)
		}
		vm.MustPowerDown(t, 2*time.Minute)
	}
	a, b := got[0], got[1]
	if a.hostname != "baked-a" || b.hostname != "baked-b" || a.machineID == b.machineID || len(a.machineID) != 32 || a.hostKeys == b.hostKeys {
		t.Errorf("instances share identity: %+v and %+v; want their own hostname, machine-id and host keys", a, b)
	}
	t.Logf("first boot to SSH: unbaked (seed, cloud-init) %s; baked %s and %s",
		before.SSHAfter.Round(100*time.Millisecond), sshAfter[0].Round(100*time.Millisecond), sshAfter[1].Round(100*time.Millisecond))

	t.Run("no identity, no sshd", func(t *testing.T) {
		vm := imagetest.Boot(t, baked, imagetest.BootOptions{NoIdentity: true, NoWait: true})
		ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
		defer cancel()
		if err := vm.WaitConsole(ctx, regexp.MustCompile(`endpointkit: no instance identity`)); err != nil {
			t.Fatalf("%v\n%s", err, vm.Console())
		}
		if err := vm.WaitConsole(ctx, regexp.MustCompile(m.Readiness.SerialRegex)); err != nil {
			t.Fatalf("%v\n%s", err, vm.Console())
		}
		// sshd would send its version line first; nothing may answer.
		conn, err := net.DialTimeout("tcp", vm.SSHAddr, 10*time.Second)
		if err != nil {
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(20 * time.Second))
		buf := make([]byte, 4)
		if n, _ := io.ReadFull(conn, buf); n == 4 && string(buf) == "SSH-" {
			t.Fatal("an instance without an identity answered SSH")
		}
	})
}
