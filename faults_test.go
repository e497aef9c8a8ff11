package endpointkit

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// copyLesson copies a lesson directory into a fresh lessons/ folder and
// applies edits (path relative to the lesson → new content).
func copyLesson(tb testing.TB, src string, edits map[string]string) string {
	tb.Helper()
	dst := filepath.Join(tb.TempDir(), "lessons", filepath.Base(src))
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		tb.Fatal(err)
	}
	for rel, content := range edits {
		if err := os.WriteFile(filepath.Join(dst, rel), []byte(content), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	return dst
}

func pairLesson(tb testing.TB) string {
	return filepath.Join(ektest.RepoRoot(tb), "testdata", "lessons", "pair")
}

func singleLesson(tb testing.TB) string {
	return filepath.Join(ektest.RepoRoot(tb), "testdata", "lessons", "single")
}

// mustNotExist fails if the instance's state directory exists: nothing
// may have started.
func mustNotExist(tb testing.TB, opts Options) {
	tb.Helper()
	if _, err := os.Stat(InstanceDir(opts.StateRoot, opts.Instance)); err == nil {
		tb.Errorf("state directory created although Up failed before starting anything")
	}
	assertClean(tb, opts, "")
}

func TestUpUnknownImage(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, nil)
	meta, err := os.ReadFile(filepath.Join(pairLesson(t), "lesson.meta.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := copyLesson(t, pairLesson(t), map[string]string{
		"lesson.meta.yaml": strings.Replace(string(meta), "image: tiny\n    configurationType: ssh\n    presentations:\n      - {name: cli, port: 22, type: ssh}\n  - name: b",
			"image: vqfx-snap1\n    configurationType: ssh\n    presentations:\n      - {name: cli, port: 22, type: ssh}\n  - name: b", 1)})
	_, err = Up(context.Background(), dir, opts)
	if !errors.Is(err, ErrUnknownImage) {
		t.Fatalf("Up: %v; want ErrUnknownImage", err)
	}
	for _, want := range []string{"lesson.meta.yaml:10:12: endpoints[0].image: endpoint a", `image "vqfx-snap1"`, "imagebuild build"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	mustNotExist(t, opts)
}

// A recipe whose vendor disk is not there fails before anything starts,
// saying which file to provide.
func TestUpUnbuildableImage(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, nil)
	recipes := t.TempDir()
	os.MkdirAll(filepath.Join(recipes, "vqfx-snap1"), 0o755)
	recipe := "slug: vqfx-snap1\nkind: disk\ndisk:\n  path: vqfx-re.qcow2\n  sha256: " + strings.Repeat("ab", 32) + "\n"
	if err := os.WriteFile(filepath.Join(recipes, "vqfx-snap1", "image.yaml"), []byte(recipe), 0o644); err != nil {
		t.Fatal(err)
	}
	opts.Images.Recipes = []string{recipes}
	meta, _ := os.ReadFile(filepath.Join(pairLesson(t), "lesson.meta.yaml"))
	dir := copyLesson(t, pairLesson(t), map[string]string{"lesson.meta.yaml": strings.ReplaceAll(string(meta), "image: tiny", "image: vqfx-snap1")})
	_, err := Up(context.Background(), dir, opts)
	if !errors.Is(err, ErrUnbuildable) {
		t.Fatalf("Up: %v; want ErrUnbuildable", err)
	}
	for _, want := range []string{`image "vqfx-snap1"`, "image.yaml:4:9: disk.path", "vqfx-re.qcow2"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
	mustNotExist(t, opts)
}

// An endpoint that never becomes ready fails Up at the deadline with its
// console tail, and everything started is removed.
func TestUpNeverReady(t *testing.T) {
	requireLaunch(t)
	tiny := imagetest.Tiny(t)
	// The same image, waiting for a console line the guest never prints.
	dir := t.TempDir()
	for f := range tiny.Manifest.Artifacts {
		if err := os.Symlink(tiny.Path(f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	m := tiny.Manifest
	m.Readiness.SerialRegex = "never-printed-marker"
	if err := vmimage.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t, map[string]string{"tiny": dir})
	opts.ReadyTimeout = 20 * time.Second
	downAtEnd(t, opts)
	_, err := Up(context.Background(), singleLesson(t), opts)
	var be *BootError
	if !errors.As(err, &be) || !errors.Is(err, ErrBoot) {
		t.Fatalf("Up: %v; want a *BootError", err)
	}
	if !strings.Contains(be.Reason, "not ready after 20s") || !strings.Contains(be.Console, "endpointkit: ready") {
		t.Errorf("boot error: reason %q, console tail %q; want the deadline and the guest's console", be.Reason, be.Console)
	}
	assertClean(t, opts, "")
}

// A configuration failure on one endpoint leaves the lesson up, the
// others configured, and says which failed.
func TestUpConfigFailure(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	dir := copyLesson(t, pairLesson(t), map[string]string{"stage0/configs/b.sh": "#!/bin/sh\necho about to fail\nfalse\n"})
	inst, err := Up(context.Background(), dir, opts)
	var ce *ConfigureError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConfigure) || inst == nil {
		t.Fatalf("Up: %v (instance %v); want the instance and a *ConfigureError", err, inst)
	}
	var cerr *configure.Error
	if len(ce.Failed) != 1 || ce.Failed[0].Endpoint != "b" || !errors.As(err, &cerr) || cerr.Endpoint != "b" || !strings.HasSuffix(cerr.File, "b.sh") {
		t.Errorf("ConfigureError %v; want exactly b, naming b.sh", err)
	}
	hostLink := hostLinkOf(t, opts)
	reopened, err := Open(inst.Dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	st := map[string]RunningEndpoint{}
	for _, e := range reopened.Status(context.Background()) {
		st[e.Name] = e
	}
	if st["a"].State != StateConfigured || st["b"].State != StateConfigFailed || !strings.Contains(st["b"].Error, "b.sh") {
		t.Errorf("status a=%s b=%s (%s); want a configured, b config-failed naming b.sh", st["a"].State, st["b"].State, st["b"].Error)
	}
	if _, err := reopened.Run(context.Background(), "b", "true"); err != nil {
		t.Errorf("b is not up after its configuration failed: %v", err)
	}
	if err := reopened.Down(context.Background()); err != nil {
		t.Fatal(err)
	}
	assertClean(t, opts, hostLink)
}

// Cancelling Up while the endpoints boot removes everything started.
func TestUpCancelled(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	progress := opts.Progress
	booted := 0
	opts.Progress = func(e Event) {
		progress(e)
		if e.Step == StepBoot {
			if booted++; booted == 2 {
				time.AfterFunc(time.Second, cancel) // mid-boot
			}
		}
	}
	t0 := time.Now()
	_, err := Up(ctx, pairLesson(t), opts)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Up: %v; want context.Canceled", err)
	}
	t.Logf("cancelled Up returned after %.1fs", time.Since(t0).Seconds())
	assertClean(t, opts, "")
}

// Down works after a crash: launchers killed, or the whole state directory
// deleted while the VMs run.
func TestDownAfterCrash(t *testing.T) {
	requireLaunch(t)
	for _, crash := range []string{"kill-launchers", "delete-state"} {
		t.Run(crash, func(t *testing.T) {
			opts := testOptions(t, tinyImages(t))
			downAtEnd(t, opts)
			inst, err := Up(context.Background(), singleLesson(t), opts)
			if err != nil {
				t.Fatalf("Up: %v", err)
			}
			hostLink := hostLinkOf(t, opts)
			switch crash {
			case "kill-launchers":
				for _, e := range inst.Endpoints {
					if err := syscall.Kill(e.PID, syscall.SIGKILL); err != nil {
						t.Fatal(err)
					}
				}
			case "delete-state":
				if err := os.RemoveAll(inst.Dir); err != nil {
					t.Fatal(err)
				}
			}
			if err := Teardown(context.Background(), inst.Dir, opts); err != nil {
				t.Fatalf("Teardown: %v", err)
			}
			assertClean(t, opts, hostLink)
		})
	}
}

// Mistakes found before anything starts: a stage the lesson does not have,
// a launcher that is not there, an instance that already exists.
func TestUpRefusesEarly(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, nil)
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want error
		text string
	}{
		{"stage", func(o *Options) { o.Stage = 3 }, ErrBadStage, "lesson.meta.yaml:22:3: stages: stage 3: the lesson has stages 0 to 0"},
		{"launcher", func(o *Options) { o.Launcher = filepath.Join(t.TempDir(), "endpoint") }, ErrNoLauncher, "go build -o"},
		{"exists", func(o *Options) { os.MkdirAll(InstanceDir(o.StateRoot, o.Instance), 0o755) }, ErrInstanceExists, "lesson down --instance"},
	} {
		o := opts
		o.Instance = ektest.Name("ekt")
		tc.edit(&o)
		_, err := Up(context.Background(), pairLesson(t), o)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) {
			t.Errorf("%s: %v; want %v saying %q", tc.name, err, tc.want, tc.text)
		}
		if tc.name != "exists" {
			mustNotExist(t, o)
		}
	}
}

// A lesson cabling an endpoint to more links than its image's NIC layout
// holds is refused before anything starts, naming the connection that
// does not fit, the endpoint, the image and its layout.
func TestUpNICLayoutTooSmall(t *testing.T) {
	requireLaunch(t)
	tiny := imagetest.Tiny(t)
	// The same image, with room for one data NIC.
	dir := t.TempDir()
	for f := range tiny.Manifest.Artifacts {
		if err := os.Symlink(tiny.Path(f), filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	m := tiny.Manifest
	m.NICs = vmimage.NICLayout{Data: vmimage.PCIAddr{Slot: 5}, Slots: 1}
	if err := vmimage.Write(dir, m); err != nil {
		t.Fatal(err)
	}
	opts := testOptions(t, map[string]string{"tiny": dir})
	_, err := Up(context.Background(), lessonPath(t, "linux-triangle"), opts)
	if !errors.Is(err, vmimage.ErrNICLayout) {
		t.Fatalf("Up: %v; want vmimage.ErrNICLayout", err)
	}
	for _, want := range []string{"lesson.meta.yaml:", ": connections[2]: endpoint r1: its link 2 does not fit: image tiny's NIC layout holds 1 data NICs",
		"management at 02.0 (eth0), data NICs at slot 5", "cable fewer links to r1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	mustNotExist(t, opts)
}
