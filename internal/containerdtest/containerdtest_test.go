package containerdtest_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/containerdtest"
)

func TestConfig(t *testing.T) {
	p := containerdtest.PathsIn("/tmp/x")
	plain := containerdtest.Config(p, "", nil, "")
	for _, want := range []string{`root = "/tmp/x/root"`, `address = "/tmp/x/containerd.sock"`, `, "io.containerd.grpc.v1.cri"]`, `path = "/tmp/x/root/opt"`} {
		if !strings.Contains(plain, want) {
			t.Errorf("config without CRI lacks %s:\n%s", want, plain)
		}
	}
	cri := containerdtest.Config(p, "native", &containerdtest.CRI{SandboxImage: "example.test/pause:1", CNIBinDir: "/b", CNIConfDir: "/c", RegistryConfigDir: "/r"}, "")
	for _, want := range []string{`restrict_oom_score_adj = true`, `sandbox_image = "example.test/pause:1"`, `bin_dir = "/b"`, `conf_dir = "/c"`, `config_path = "/r"`, `snapshotter = "native"`, `stream_server_port = "0"`} {
		if !strings.Contains(cri, want) {
			t.Errorf("CRI config lacks %s:\n%s", want, cri)
		}
	}
	if strings.Contains(cri, `, "io.containerd.grpc.v1.cri"]`) {
		t.Errorf("CRI config disables the CRI plugin:\n%s", cri)
	}
}

// TestRunContainer starts a private containerd, imports a busybox image,
// runs a container that prints and exits, and checks that nothing is left.
func TestRunContainer(t *testing.T) {
	d := containerdtest.Start(t, containerdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tar := filepath.Join(t.TempDir(), "bb.tar")
	containerdtest.WriteImageTar(t, containerdtest.BusyboxImage(t, "/bin/busybox", "echo"), "example.test/bb:1", tar)
	if out, err := d.Ctr(ctx, "default", "images", "import", tar); err != nil {
		t.Fatalf("import: %v\n%s", err, out)
	}
	out, err := d.Ctr(ctx, "default", "run", "--rm", "example.test/bb:1", "ektc1", "/bin/busybox", "echo", "hello from runc")
	if err != nil || strings.TrimSpace(out) != "hello from runc" {
		t.Fatalf("ctr run: %q %v\n%s", out, err, d.LogTail(20))
	}
	d.AssertClean(t)
	pid := d.PID()
	if err := d.Stop(); err != nil {
		t.Error(err)
	}
	if pids, _ := containerdtestProcesses(pid); len(pids) > 0 {
		t.Errorf("containerd pid %d still there", pid)
	}
}

// TestCRIPlugin starts a daemon configured as a Kubernetes node runtime and
// checks that the CRI plugin loaded with the test's settings.
func TestCRIPlugin(t *testing.T) {
	dir := t.TempDir()
	d := containerdtest.Start(t, containerdtest.Options{CRI: &containerdtest.CRI{
		SandboxImage: "example.test/pause:1", CNIConfDir: dir}})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := d.Ctr(ctx, "", "plugins", "ls")
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) >= 4 && f[0] == "io.containerd.grpc.v1" && f[1] == "cri" {
			found = true
			if f[len(f)-1] != "ok" {
				t.Errorf("CRI plugin: %s\n%s", l, d.LogTail(30))
			}
		}
	}
	if !found {
		t.Errorf("no CRI plugin in:\n%s", out)
	}
	if log := d.LogTail(200); !strings.Contains(log, "RestrictOOMScoreAdj:true") {
		t.Errorf("the CRI plugin did not log restrict_oom_score_adj on:\n%s", log)
	}
	// The sandbox image, imported where the CRI plugin looks for it.
	tar := filepath.Join(t.TempDir(), "pause.tar")
	containerdtest.WriteImageTar(t, containerdtest.BusyboxImage(t, "/bin/busybox", "sleep", "2147483647"), "example.test/pause:1", tar)
	if out, err := d.Ctr(ctx, containerdtest.K8sNamespace, "images", "import", tar); err != nil {
		t.Fatalf("import into %s: %v\n%s", containerdtest.K8sNamespace, err, out)
	}
	if out, err := d.Ctr(ctx, containerdtest.K8sNamespace, "images", "ls", "-q"); err != nil || !strings.Contains(out, "example.test/pause:1") {
		t.Errorf("%s images: %q %v", containerdtest.K8sNamespace, out, err)
	}
}
