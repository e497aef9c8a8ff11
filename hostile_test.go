package endpointkit

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/wiring"
)

// Hostile lessons are refused, each with a named error, before anything
// starts: a configuration file that is a symbolic link out of the lesson,
// a lesson directory that is a loop of symbolic links, a 1 GB
// configuration file (refused by its size, never read).
func TestHostileLessonsRefused(t *testing.T) {
	ektest.RequireTool(t, "go")
	opts := testOptions(t, tinyImages(t))
	outside := filepath.Join(t.TempDir(), "secret.sh")
	os.WriteFile(outside, []byte("echo secret\n"), 0o644)

	escape := copyLesson(t, pairLesson(t), nil)
	os.Remove(filepath.Join(escape, "stage0/configs/a.sh"))
	if err := os.Symlink(outside, filepath.Join(escape, "stage0/configs/a.sh")); err != nil {
		t.Fatal(err)
	}
	loop := filepath.Join(t.TempDir(), "loop")
	if err := os.Symlink(loop, loop); err != nil {
		t.Fatal(err)
	}
	huge := copyLesson(t, pairLesson(t), nil)
	if err := os.Truncate(filepath.Join(huge, "stage0/configs/b.sh"), 1<<30); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, dir string
		want      error
		text      string
	}{
		{"symlink out", escape, lessonmeta.ErrUnsafePath, "stage0/configs/a.sh is a symbolic link to " + outside + ", outside the lesson directory"},
		{"symlink loop", loop, lessonmeta.ErrUnsafePath, loop + " is a loop of symbolic links"},
		{"1 GB config", huge, lessonmeta.ErrTooLarge, "stage0/configs/b.sh is 1024 MiB; a configuration file may be at most 16 MiB"},
	} {
		o := opts
		o.Instance = ektest.Name("ekt")
		t0 := time.Now()
		_, err := Up(context.Background(), tc.dir, o)
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.text) || time.Since(t0) > 10*time.Second {
			t.Errorf("%s: %v after %v; want %v saying %q", tc.name, err, time.Since(t0), tc.want, tc.text)
		}
		mustNotExist(t, o)
	}
}

// collidingInstances returns two valid instance names whose host links
// have the same name (a 24-bit tag of the name's hash: wiring/naming.go).
func collidingInstances(t *testing.T) (string, string) {
	seen := map[string]string{}
	base := ektest.Name("ekc")
	for n := 0; n < 1<<20; n++ {
		name := base + "-" + hex.EncodeToString([]byte{byte(n >> 16), byte(n >> 8), byte(n)})
		sum := sha256.Sum256([]byte("endpointkit/" + name))
		tag := hex.EncodeToString(sum[:3])
		if other, ok := seen[tag]; ok {
			return other, name
		}
		seen[tag] = name
	}
	t.Fatal("no collision in 2^20 names")
	return "", ""
}

// An instance whose name would collide with another's (their host links
// share a name) is a named error before anything of it starts, and
// removing what it made leaves the other instance whole.
func TestCollidingInstanceNames(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	first, second := collidingInstances(t)
	l, err := lessonmeta.Load(pairLesson(t), lessonmeta.Options{})
	if err != nil {
		t.Fatal(err)
	}
	m, err := (endpoint.Options{Instance: first}).Build(l, nil)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := wiring.NewPlan(m, wiring.Options{Instance: first})
	if err != nil {
		t.Fatal(err)
	}
	local := &wiring.Local{StateRoot: opts.StateRoot}
	if _, err := local.Apply(context.Background(), plan); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Remove(context.Background(), first) })
	p2, _ := wiring.NewPlan(m, wiring.Options{Instance: second})
	if p2.HostLink != plan.HostLink {
		t.Fatalf("%s and %s do not collide (%s, %s)", first, second, plan.HostLink, p2.HostLink)
	}
	o := opts
	o.Instance = second
	_, err = Up(context.Background(), pairLesson(t), o)
	if !errors.Is(err, wiring.ErrNameCollision) || !strings.Contains(err.Error(), plan.HostLink) {
		t.Fatalf("Up %s: %v; want ErrNameCollision naming %s", second, err, plan.HostLink)
	}
	mustNotExist(t, o)
	if links, _ := ektest.LinksWithPrefix(plan.HostLink); len(links) != 1 {
		t.Errorf("%s's host link %s is gone after %s's failed up: %v", first, plan.HostLink, second, links)
	}
	if err := local.Remove(context.Background(), first); err != nil {
		t.Fatal(err)
	}
}

// A lesson whose endpoint names are 63 characters long (the longest DNS
// label) runs: their launcher directories keep every socket path within
// the kernel's limit, the stage configures, the link works.
func TestLongEndpointNames(t *testing.T) {
	requireLaunch(t)
	opts := testOptions(t, tinyImages(t))
	downAtEnd(t, opts)
	long := func(c string) string { return c + strings.Repeat("x", 62) }
	meta, _ := os.ReadFile(filepath.Join(pairLesson(t), "lesson.meta.yaml"))
	text := strings.NewReplacer("name: a\n", "name: "+long("a")+"\n", "name: b\n", "name: "+long("b")+"\n",
		"{a: a, b: b,", "{a: "+long("a")+", b: "+long("b")+",").Replace(string(meta))
	dir := copyLesson(t, pairLesson(t), map[string]string{"lesson.meta.yaml": text})
	for _, c := range []string{"a", "b"} {
		os.Rename(filepath.Join(dir, "stage0/configs", c+".sh"), filepath.Join(dir, "stage0/configs", long(c)+".sh"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	inst, err := Up(ctx, dir, opts)
	if err != nil {
		t.Fatalf("Up: %v", err)
	}
	for _, e := range inst.Endpoints {
		if len(e.Name) != 63 || e.State != StateConfigured || len(e.ConsoleSocket) > maxSocketPath {
			t.Errorf("%s: %s, console socket %s (%d bytes)", e.Name, e.State, e.ConsoleSocket, len(e.ConsoleSocket))
		}
	}
	checkLinksOK(t, ctx, inst, "63-character names")
}
