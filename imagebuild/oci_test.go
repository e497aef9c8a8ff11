package imagebuild_test

import (
	"archive/tar"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/containerdtest"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/registrytest"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
)

// smallLayout writes a random two-layer image as an OCI layout at
// dir/oci, for tests of what reads layouts.
func smallLayout(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	img, err := random.Image(256<<10, 2)
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(filepath.Join(dir, imagebuild.OCIDir), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	return dir
}

// TestLoadOCICorrupt: a damaged layout is a named error, never a panic.
func TestLoadOCICorrupt(t *testing.T) {
	cases := map[string]func(t *testing.T, oci string){
		"missing":        func(t *testing.T, oci string) { os.RemoveAll(oci) },
		"no oci-layout":  func(t *testing.T, oci string) { os.Remove(filepath.Join(oci, "oci-layout")) },
		"bad oci-layout": func(t *testing.T, oci string) { os.WriteFile(filepath.Join(oci, "oci-layout"), []byte("{"), 0o644) },
		"bad index": func(t *testing.T, oci string) {
			os.WriteFile(filepath.Join(oci, "index.json"), []byte(`{"manifests": 7}`), 0o644)
		},
		"empty index": func(t *testing.T, oci string) {
			os.WriteFile(filepath.Join(oci, "index.json"), []byte(`{"schemaVersion":2}`), 0o644)
		},
		"truncated blob": func(t *testing.T, oci string) { truncateBiggestBlob(t, oci, 1000) },
		"missing blob":   func(t *testing.T, oci string) { truncateBiggestBlob(t, oci, -1) },
		"altered blob": func(t *testing.T, oci string) {
			p := biggestBlob(t, oci)
			raw, _ := os.ReadFile(p)
			raw[len(raw)/2] ^= 0xff
			os.WriteFile(p, raw, 0o644)
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			dir := smallLayout(t)
			oci := filepath.Join(dir, imagebuild.OCIDir)
			damage(t, oci)
			_, _, err := imagebuild.LoadOCI(dir)
			if !errors.Is(err, imagebuild.ErrLayout) || !strings.Contains(err.Error(), oci) {
				t.Fatalf("LoadOCI = %v; want ErrLayout naming %s", err, oci)
			}
			if err := imagebuild.Export(dir, filepath.Join(t.TempDir(), "x.tar"), "example.test/x:1"); !errors.Is(err, imagebuild.ErrLayout) {
				t.Errorf("Export = %v; want ErrLayout", err)
			}
			if _, err := imagebuild.Push(context.Background(), dir, "127.0.0.1:1/x:1", imagebuild.PushOptions{StateFile: "-"}); !errors.Is(err, imagebuild.ErrLayout) {
				t.Errorf("Push = %v; want ErrLayout before any network", err)
			}
		})
	}
}

func biggestBlob(t *testing.T, oci string) string {
	t.Helper()
	blobs, _ := filepath.Glob(filepath.Join(oci, "blobs", "sha256", "*"))
	best, size := "", int64(-1)
	for _, b := range blobs {
		if st, err := os.Stat(b); err == nil && st.Size() > size {
			best, size = b, st.Size()
		}
	}
	return best
}

func truncateBiggestBlob(t *testing.T, oci string, n int64) {
	p := biggestBlob(t, oci)
	if n < 0 {
		os.Remove(p)
		return
	}
	os.Truncate(p, n)
}

// TestPushRefused: 401, 404, a TLS certificate from an unknown CA and an
// unreachable registry each give an error naming the reference and what
// went wrong, and leave no tag; the right credentials (Docker config) and
// CA (--ca) then work.
func TestPushRefused(t *testing.T) {
	dir := smallLayout(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Setenv("DOCKER_CONFIG", t.TempDir()) // no credentials
	opts := imagebuild.PushOptions{StateFile: "-"}

	reg := registrytest.Start(t, registrytest.Options{TLS: true, User: "lab", Password: "s3cret"})
	ref := reg.Host + "/endpoints/refused:v1"
	_, err := imagebuild.Push(ctx, dir, ref, opts)
	wantErr(t, err, ref, "TLS", "--ca")
	opts.CAFile = reg.CAFile
	_, err = imagebuild.Push(ctx, dir, ref, opts)
	wantErr(t, err, ref, "401")
	if tags, _ := reg.Tags("endpoints/refused"); len(tags) > 0 {
		t.Errorf("refused pushes left tags %v", tags)
	}
	// Credentials from the Docker config keychain.
	cfg := t.TempDir()
	auth := base64.StdEncoding.EncodeToString([]byte("lab:s3cret"))
	os.WriteFile(filepath.Join(cfg, "config.json"), []byte(`{"auths":{"`+reg.Host+`":{"auth":"`+auth+`"}}}`), 0o600)
	t.Setenv("DOCKER_CONFIG", cfg)
	res, err := imagebuild.Push(ctx, dir, ref, opts)
	if err != nil {
		t.Fatalf("push with credentials and CA: %v", err)
	}
	if tags, _ := reg.Tags("endpoints/refused"); len(tags) != 1 {
		t.Errorf("tags after the good push: %v (digest %s)", tags, res.Digest)
	}

	// Something on loopback that is not a registry: 404.
	srv := httptest.NewServer(http.NotFoundHandler())
	defer srv.Close()
	ref404 := strings.TrimPrefix(srv.URL, "http://") + "/endpoints/none:v1"
	_, err = imagebuild.Push(ctx, dir, ref404, imagebuild.PushOptions{StateFile: "-"})
	wantErr(t, err, ref404, "404")

	// Nothing listening.
	refDown := "127.0.0.1:1/endpoints/down:v1"
	_, err = imagebuild.Push(ctx, dir, refDown, imagebuild.PushOptions{StateFile: "-"})
	wantErr(t, err, refDown, "unreachable")
}

func wantErr(t *testing.T, err error, ref string, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("push %s succeeded; want an error mentioning %q", ref, subs)
	}
	if !errors.Is(err, imagebuild.ErrPush) {
		t.Errorf("error %v does not wrap ErrPush", err)
	}
	for _, s := range append([]string{ref}, subs...) {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q lacks %q", err, s)
		}
	}
}

// TestPushKilledRestarts kills `imagebuild push` while the registry
// receives the layers: no tag exists afterwards, and pushing again
// completes and gives the same digest.
func TestPushKilledRestarts(t *testing.T) {
	ektest.RequireTool(t, "go")
	dir := t.TempDir()
	img, err := random.Image(16<<20, 3) // incompressible, big enough to be slow
	if err != nil {
		t.Fatal(err)
	}
	p, err := layout.Write(filepath.Join(dir, imagebuild.OCIDir), empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.AppendImage(img); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "imagebuild")
	if out, err := exec.Command("go", "build", "-o", bin, "github.com/endpointkit/endpointkit/cmd/imagebuild").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	reg := registrytest.Start(t, registrytest.Options{})
	ref := reg.Host + "/endpoints/killed:v1"
	var killedAt int64
	for attempt := 0; attempt < 5 && killedAt == 0; attempt++ {
		cmd := exec.Command(bin, "push", dir, ref)
		cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+t.TempDir(), "HOME="+t.TempDir())
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill as soon as the registry holds part of an upload.
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if n := uploadBytes(reg); n > 0 {
				cmd.Process.Signal(syscall.SIGKILL)
				killedAt = n
				break
			}
			time.Sleep(2 * time.Millisecond)
		}
		err := cmd.Wait()
		if killedAt > 0 && err == nil {
			killedAt = 0 // it finished before the signal: try again on a fresh repository
			ref = reg.Host + "/endpoints/killed" + strconv.Itoa(attempt) + ":v1"
		}
	}
	if killedAt == 0 {
		t.Fatal("never caught the push mid-upload")
	}
	repo := strings.TrimPrefix(strings.TrimSuffix(ref, ":v1"), reg.Host+"/")
	if tags, _ := reg.Tags(repo); len(tags) > 0 {
		t.Fatalf("a killed push left tags %v", tags)
	}
	res, err := imagebuild.Push(context.Background(), dir, ref, imagebuild.PushOptions{StateFile: "-"})
	if err != nil {
		t.Fatalf("push after a killed one: %v", err)
	}
	want, _ := img.Digest()
	if res.Digest != want.String() {
		t.Errorf("digest %s, want %s", res.Digest, want)
	}
	if tags, _ := reg.Tags(repo); len(tags) != 1 {
		t.Errorf("tags %v", tags)
	}
	t.Logf("killed with %d bytes in upload sessions; the restart uploaded %d bytes", killedAt, res.Uploaded)
}

// uploadBytes is how many bytes sit in the registry's unfinished uploads.
func uploadBytes(reg *registrytest.Registry) int64 {
	var n int64
	filepath.Walk(filepath.Join(reg.Storage(), "docker", "registry", "v2", "repositories"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() && strings.Contains(p, "/_uploads/") && filepath.Base(p) == "data" {
			n += fi.Size()
		}
		return nil
	})
	return n
}

// TestExportImport: the exported tarball is an OCI layout that `ctr images
// import` takes (same digest) and a docker-save archive (manifest.json)
// naming the same blobs.
func TestExportImport(t *testing.T) {
	dir := smallLayout(t)
	file := filepath.Join(t.TempDir(), "img.tar")
	if err := imagebuild.Export(dir, file, "example.test/endpoints/small:v1"); err != nil {
		t.Fatal(err)
	}
	local, _, err := imagebuild.LoadOCI(dir)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := local.Digest()
	names := tarNames(t, file)
	for _, n := range []string{"oci-layout", "index.json", "manifest.json"} {
		if !names[n] {
			t.Errorf("export lacks %s", n)
		}
	}
	// What docker load reads: manifest.json, config and layers by path.
	dimg, err := tarball.ImageFromPath(file, nil)
	if err != nil {
		t.Fatalf("docker-save view of the export: %v", err)
	}
	dm, _ := dimg.Manifest()
	lm, _ := local.Manifest()
	if dm.Config.Digest != lm.Config.Digest || len(dm.Layers) != len(lm.Layers) {
		t.Errorf("docker view: config %s, %d layers; want %s, %d", dm.Config.Digest, len(dm.Layers), lm.Config.Digest, len(lm.Layers))
	}
	var docker []struct{ RepoTags []string }
	readTarJSON(t, file, "manifest.json", &docker)
	if len(docker) != 1 || len(docker[0].RepoTags) != 1 || docker[0].RepoTags[0] != "example.test/endpoints/small:v1" {
		t.Errorf("manifest.json RepoTags: %+v", docker)
	}
	// Reproducible: the same export twice is the same file.
	file2 := filepath.Join(t.TempDir(), "img.tar")
	imagebuild.Export(dir, file2, "example.test/endpoints/small:v1")
	a, _ := os.ReadFile(file)
	b, _ := os.ReadFile(file2)
	if string(a) != string(b) {
		t.Error("two exports of one layout differ")
	}

	d := containerdtest.Start(t, containerdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if out, err := d.Ctr(ctx, "default", "images", "import", file); err != nil {
		t.Fatalf("ctr images import: %v\n%s", err, out)
	}
	out, err := d.Ctr(ctx, "default", "images", "ls")
	if err != nil || !strings.Contains(out, "example.test/endpoints/small:v1") || !strings.Contains(out, want.String()) {
		t.Errorf("ctr images ls after import: %v\n%s", err, out)
	}
}

func tarNames(t *testing.T, file string) map[string]bool {
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	names := map[string]bool{}
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return names
		}
		if err != nil {
			t.Fatal(err)
		}
		names[h.Name] = true
	}
}

func readTarJSON(t *testing.T, file, name string, v any) {
	f, _ := os.Open(file)
	defer f.Close()
	tr := tar.NewReader(f)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("%s not in %s: %v", name, file, err)
		}
		if h.Name == name {
			if err := json.NewDecoder(tr).Decode(v); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
}
