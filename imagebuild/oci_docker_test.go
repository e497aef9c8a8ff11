package imagebuild_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
)

// dockerd is Debian's dockerd started by the test with its own data and
// exec roots and socket (no bridge, no iptables, vfs storage; it runs its
// own containerd, which it stops when it stops).
type dockerd struct {
	dir  string
	cmd  *exec.Cmd
	done chan struct{}
}

func startDockerd(t *testing.T) *dockerd {
	t.Helper()
	ektest.RequireRoot(t)
	ektest.RequireTool(t, "dockerd")
	if _, err := os.Stat("/usr/bin/docker"); err != nil {
		t.Skip("needs Debian's docker.io (/usr/bin/docker): run `make deps`")
	}
	dir, err := os.MkdirTemp("", "ektdockerd-") // short: the socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o644)
	log, err := os.Create(filepath.Join(dir, "log"))
	if err != nil {
		t.Fatal(err)
	}
	d := &dockerd{dir: dir, done: make(chan struct{})}
	d.cmd = exec.Command("dockerd", "--data-root", filepath.Join(dir, "root"), "--exec-root", filepath.Join(dir, "exec"),
		"--pidfile", filepath.Join(dir, "pid"), "-H", "unix://"+filepath.Join(dir, "docker.sock"),
		"--config-file", filepath.Join(dir, "daemon.json"), "--bridge=none", "--iptables=false", "--ip6tables=false",
		"--ip-masq=false", "--userland-proxy=false", "--storage-driver=vfs")
	d.cmd.Stdout, d.cmd.Stderr = log, log
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); log.Close(); close(d.done) }()
	t.Cleanup(func() {
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-d.done:
		case <-time.After(30 * time.Second):
			d.cmd.Process.Kill()
			<-d.done
		}
		for _, m := range mountsUnder(dir) {
			syscall.Unmount(m, syscall.MNT_DETACH)
		}
		if pids, _ := ektest.ProcessesMatching(dir); len(pids) > 0 {
			t.Errorf("dockerd left processes: %v", pids)
		}
	})
	deadline := time.Now().Add(time.Minute)
	for {
		if _, err := d.docker(context.Background(), "version"); err == nil {
			return d
		}
		select {
		case <-d.done:
			raw, _ := os.ReadFile(filepath.Join(dir, "log"))
			t.Fatalf("dockerd exited at start-up:\n%s", raw)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("dockerd did not answer within a minute")
		}
	}
}

func (d *dockerd) docker(ctx context.Context, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, "/usr/bin/docker", append([]string{"-H", "unix://" + filepath.Join(d.dir, "docker.sock")}, args...)...).CombinedOutput()
	return string(out), err
}

func mountsUnder(dir string) []string {
	raw, _ := os.ReadFile("/proc/self/mountinfo")
	var ms []string
	for _, l := range strings.Split(string(raw), "\n") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir+"/") {
			ms = append([]string{f[4]}, ms...)
		}
	}
	return ms
}

// TestExportDockerLoad: `docker load` (Debian's docker.io 20.10, which
// reads docker's manifest.json, not the OCI index) takes the exported
// tarball, and the loaded image's ID is the OCI config's digest.
func TestExportDockerLoad(t *testing.T) {
	dir := smallLayout(t)
	d := startDockerd(t)
	file := filepath.Join(t.TempDir(), "img.tar")
	if err := imagebuild.Export(dir, file, "example.test/endpoints/small:v1"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := d.docker(ctx, "load", "-i", file)
	if err != nil || !strings.Contains(out, "Loaded image: example.test/endpoints/small:v1") {
		t.Fatalf("docker load: %v\n%s", err, out)
	}
	img, _, err := imagebuild.LoadOCI(dir)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := img.Manifest()
	out, err = d.docker(ctx, "image", "inspect", "--format", "{{.Id}}", "example.test/endpoints/small:v1")
	if err != nil || strings.TrimSpace(out) != m.Config.Digest.String() {
		t.Errorf("docker image ID %q (%v); want the config digest %s", out, err, m.Config.Digest)
	}
	d.docker(ctx, "image", "rm", "example.test/endpoints/small:v1")
}
