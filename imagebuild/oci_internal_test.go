package imagebuild

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
)

func TestParseAptDepends(t *testing.T) {
	out := []byte(`qemu-system-x86
  |Depends: libaio1
  Depends: libfoo1
  Depends: libbar2
  PreDepends: libc6
  Recommends: ovmf
libaio1
  Depends: libc6
<virtual-thing>
libc6
`)
	g := parseAptDepends(out)
	want := [][]string{{"libaio1", "libfoo1"}, {"libbar2"}, {"libc6"}}
	if got := g["qemu-system-x86"]; len(got) != 3 || strings.Join(got[0], "|") != "libaio1|libfoo1" || got[1][0] != want[1][0] || got[2][0] != "libc6" {
		t.Errorf("qemu-system-x86 deps = %v; want %v", got, want)
	}
	if _, ok := g["virtual-thing"]; ok {
		t.Error("a virtual package got an entry")
	}
	if _, ok := g["libc6"]; !ok {
		t.Error("libc6 (no deps) missing")
	}
}

func FuzzParseAptDepends(f *testing.F) {
	f.Add([]byte("a\n  Depends: b\n |Depends: c\n  Depends: <d>\n"))
	f.Add([]byte(" |Depends: x\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		for pkg, groups := range parseAptDepends(raw) {
			for _, g := range groups {
				if len(g) == 0 {
					t.Fatalf("%s: empty alternative group", pkg)
				}
			}
		}
	})
}

// TestPlainHTTPRefused: plain HTTP goes only to loopback unless Insecure;
// the refusal happens before any connection.
func TestPlainHTTPRefused(t *testing.T) {
	called := false
	base := roundTripFunc(func(*http.Request) (*http.Response, error) {
		called = true
		return &http.Response{StatusCode: 200, Body: http.NoBody}, nil
	})
	for _, tc := range []struct {
		url      string
		insecure bool
		ok       bool
	}{
		{"http://127.0.0.1:5000/v2/", false, true},
		{"http://localhost:5000/v2/", false, true},
		{"http://[::1]:5000/v2/", false, true},
		{"http://registry.example.test/v2/", false, false},
		{"http://registry.example.test/v2/", true, true},
		{"https://registry.example.test/v2/", false, true},
	} {
		called = false
		req, _ := http.NewRequest("GET", tc.url, nil)
		_, err := (&countingTransport{base: base, insecure: tc.insecure}).RoundTrip(req)
		if tc.ok != (err == nil) || called != tc.ok {
			t.Errorf("%s insecure=%v: err %v, sent %v", tc.url, tc.insecure, err, called)
		}
		if !tc.ok && !errors.Is(err, ErrPlainHTTP) {
			t.Errorf("%s: %v does not wrap ErrPlainHTTP", tc.url, err)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// TestSelectRuntimeMissing: a library a binary links that no package
// ships is named, with the binary that needs it.
func TestSelectRuntimeMissing(t *testing.T) {
	ektest.RequireTool(t, "qemu-img")
	root := t.TempDir()
	bin := filepath.Join(root, "usr", "bin")
	os.MkdirAll(bin, 0o755)
	raw, err := os.ReadFile("/usr/bin/qemu-img")
	if err != nil {
		t.Skip("needs /usr/bin/qemu-img")
	}
	os.WriteFile(filepath.Join(bin, "qemu-img"), raw, 0o755)
	tree, err := newPkgTree(map[string]string{"qemu-utils": root})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tree.selectRuntime(runtimeSelection{ELF: []string{"/usr/bin/qemu-img"}, LibDirs: []string{"/lib/x86_64-linux-gnu"}})
	if !errors.Is(err, ErrRuntimeIncomplete) || !strings.Contains(err.Error(), "which /usr/bin/qemu-img links") {
		t.Fatalf("selectRuntime = %v; want ErrRuntimeIncomplete naming the library and qemu-img", err)
	}
}

// TestBootCheckCatchesIncompleteRuntime removes, from the real runtime
// layer, a ROM the tiny image's boot loads (PVH's option ROM) and then a
// library QEMU links: each broken layer fails the boot check, which names
// the missing file.
func TestBootCheckCatchesIncompleteRuntime(t *testing.T) {
	ektest.RequireRoot(t)
	ektest.RequireQEMU(t)
	ektest.RequireTool(t, "apt-get", "dpkg-deb", "go")
	im := tinyImage(t)
	b := New(Options{CacheDir: filepath.Join(ektest.CacheDir(t), "imagebuild"), GoDir: ektest.RepoRoot(t)})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	epoch := time.Unix(0, 0)
	layers := filepath.Join(b.opts.CacheDir, "oci", "layers")
	rt, _, err := b.runtimeLayer(ctx, layers, epoch)
	if err != nil {
		t.Fatal(err)
	}
	vm, _, err := b.imageLayer(im, layers, epoch)
	if err != nil {
		t.Fatal(err)
	}
	for _, missing := range []string{"/usr/share/qemu/pvh.bin", "/lib/x86_64-linux-gnu/libz.so.1.2.13"} {
		t.Run(filepath.Base(missing), func(t *testing.T) {
			dir := t.TempDir()
			root := filepath.Join(dir, "root")
			os.Mkdir(root, 0o755)
			if err := extractLayer(rt, root); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(filepath.Join(root, missing)); err != nil {
				t.Fatalf("the runtime layer has no %s to remove: %v", missing, err)
			}
			files := layerFiles{}
			filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
				if err == nil && p != root {
					files.addDisk(strings.TrimPrefix(p, root), p)
				}
				return err
			})
			broken, _, err := b.cachedLayer(dir, "broken", strings.Repeat("0", 24), epoch, func() (layerFiles, error) { return files, nil })
			if err != nil {
				t.Fatal(err)
			}
			err = b.bootCheck(ctx, im, broken, vm)
			if !errors.Is(err, ErrBootCheck) || !strings.Contains(err.Error(), filepath.Base(strings.TrimSuffix(missing, ".1.2.13"))) {
				t.Fatalf("boot check with %s removed: %v; want ErrBootCheck naming it", missing, err)
			}
			t.Logf("caught: %.300s", err)
		})
	}
}

// tinyImage is the tiny image from the shared test cache (internal tests
// cannot use imagetest, which imports this package).
func tinyImage(t *testing.T) *vmimage.Image {
	t.Helper()
	r, err := LoadRecipe(filepath.Join(ektest.RepoRoot(t), "examples", "images", "tiny"))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	res, err := New(Options{CacheDir: filepath.Join(ektest.CacheDir(t), "imagebuild"), GoDir: ektest.RepoRoot(t)}).BuildCached(ctx, r)
	if err != nil {
		t.Fatal(err)
	}
	return res.Image
}

func TestSourceDateEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "1700000000")
	if e, err := sourceDateEpoch(); err != nil || e.Unix() != 1700000000 {
		t.Errorf("epoch %v %v", e, err)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "yesterday")
	if _, err := sourceDateEpoch(); err == nil || !strings.Contains(err.Error(), "SOURCE_DATE_EPOCH") {
		t.Errorf("bad SOURCE_DATE_EPOCH: %v", err)
	}
}
