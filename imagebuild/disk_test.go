package imagebuild

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// vendorDisk makes a small vmdk with recognisable content and returns its
// path and sha256.
func vendorDisk(t *testing.T) (string, string) {
	t.Helper()
	ektest.RequireTool(t, "qemu-img")
	dir := t.TempDir()
	raw := filepath.Join(dir, "vendor.raw")
	data := bytes.Repeat([]byte("endpointkit vendor disk "), 100000)
	if err := os.WriteFile(raw, data[:2<<20], 0o644); err != nil {
		t.Fatal(err)
	}
	vmdk := filepath.Join(dir, "vendor.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, vmdk).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	sum, err := fileSHA256(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	return vmdk, sum
}

func diskRecipe(t *testing.T, disk string) *Recipe {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "image.yaml")
	os.WriteFile(path, []byte("slug: vendor\nkind: disk\n"+disk+"qemu:\n  nicModel: e1000\n"), 0o644)
	r, err := LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestDiskBuild(t *testing.T) {
	vmdk, sum := vendorDisk(t)
	cache := t.TempDir()
	b := New(Options{CacheDir: cache})
	r := diskRecipe(t, "disk:\n  path: "+vmdk+"\n  sha256: "+sum+"\n  cloudInit: true\n")
	out := filepath.Join(t.TempDir(), "vendor")
	res, err := b.Build(context.Background(), r, out)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Image.Manifest
	if m.Kind != vmimage.KindDisk || m.Disk != DiskFile || m.DiskFormat != "qcow2" || m.Seed != SeedFile || m.Kernel != "" || m.QEMU.NICModel != "e1000" {
		t.Errorf("manifest = %+v", m)
	}
	if err := VerifyArtifacts(res.Image); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("qemu-img", "compare", vmdk, filepath.Join(out, DiskFile)).CombinedOutput(); err != nil {
		t.Errorf("converted disk differs from the vendor disk: %v %s", err, out)
	}
	// The store now has it: a recipe naming an unreachable URL with the
	// same sha256 builds without fetching.
	r2 := diskRecipe(t, "disk:\n  url: http://127.0.0.1:9/gone.vmdk\n  sha256: "+sum+"\n")
	if _, err := New(Options{CacheDir: cache, NoCache: true}).Build(context.Background(), r2, out); err != nil {
		t.Errorf("rebuild from the store: %v", err)
	}
}

func TestDiskChecksumMismatch(t *testing.T) {
	vmdk, _ := vendorDisk(t)
	cache := t.TempDir()
	wrong := strings.Repeat("0", 64)
	r := diskRecipe(t, "disk:\n  path: "+vmdk+"\n  sha256: "+wrong+"\n")
	out := filepath.Join(t.TempDir(), "vendor")
	_, err := New(Options{CacheDir: cache}).Build(context.Background(), r, out)
	if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), r.Path+":5:11: disk.sha256") {
		t.Fatalf("Build = %v; want ErrChecksum at %s:5:11", err, r.Path)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("output exists after a failed build: %v", err)
	}
	s, err := OpenStore(context.Background(), storeURL(cache))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if has, _ := s.Has(context.Background(), wrong); has {
		t.Error("the store kept a file whose checksum did not match")
	}
	if l := leftovers(cache, filepath.Join(cache, "images")); len(l) > 0 {
		t.Errorf("temporary files left: %v", l)
	}
}

func TestDiskFromURLs(t *testing.T) {
	vmdk, sum := vendorDisk(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(vmdk))))
	defer srv.Close()
	for _, url := range []string{srv.URL + "/vendor.vmdk", "file://" + vmdk} {
		r := diskRecipe(t, "disk:\n  url: "+url+"\n  sha256: "+sum+"\n  format: vmdk\n")
		res, err := New(Options{CacheDir: t.TempDir()}).Build(context.Background(), r, filepath.Join(t.TempDir(), "v"))
		if err != nil {
			t.Errorf("%s: %v", url, err)
			continue
		}
		if res.Image.Manifest.Seed != "" {
			t.Errorf("%s: seed without cloudInit", url)
		}
	}
	r := diskRecipe(t, "disk:\n  url: "+srv.URL+"/missing.vmdk\n  sha256: "+sum+"\n")
	if _, err := New(Options{CacheDir: t.TempDir()}).Build(context.Background(), r, filepath.Join(t.TempDir(), "v")); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("missing URL: %v; want a 404 error", err)
	}
}

func TestStoreVerifies(t *testing.T) {
	ctx := context.Background()
	s, err := OpenStore(ctx, "mem://")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	data := []byte("disk bytes")
	h := sha256.Sum256(data)
	sum := hex.EncodeToString(h[:])
	if err := s.Put(ctx, strings.Repeat("a", 64), bytes.NewReader(data)); !errors.Is(err, ErrChecksum) {
		t.Errorf("Put with a wrong sum = %v; want ErrChecksum", err)
	}
	if err := s.Put(ctx, sum, bytes.NewReader(data)); err != nil {
		t.Fatal(err)
	}
	var got bytes.Buffer
	if err := s.Get(ctx, sum, &got); err != nil || got.String() != string(data) {
		t.Errorf("Get = %q, %v", got.String(), err)
	}
	if err := s.Get(ctx, strings.Repeat("b", 64), &got); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Get(missing) = %v; want ErrNotExist", err)
	}
}

// TestSeedISOLabel checks the seed with blkid (the kernel-mount check is
// in TestDebianBoots, inside a guest: this host has no iso9660 driver).
func TestSeedISOLabel(t *testing.T) {
	ektest.RequireTool(t, "blkid")
	r, _ := ParseRecipe("image.yaml", []byte("slug: vendor\nkind: disk\ndisk: {path: /dev/null, sha256: "+strings.Repeat("a", 64)+"}\n"))
	r.Resolve()
	iso, err := SeedISO(r, "iid-1")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "seed.iso")
	os.WriteFile(path, iso, 0o644)
	out, err := exec.Command("blkid", "-o", "export", path).Output()
	if err != nil || !strings.Contains(string(out), "LABEL=cidata") || !strings.Contains(string(out), "TYPE=iso9660") {
		t.Errorf("blkid: %s %v", out, err)
	}
	files, _ := seedFiles(r, "iid-1")
	ud := string(files["user-data"])
	for _, w := range []string{"#cloud-config", "name: antidote", "plain_text_passwd: antidotepassword", "sudo: ALL=(ALL) NOPASSWD:ALL", "lock_passwd: false"} {
		if !strings.Contains(ud, w) {
			t.Errorf("user-data lacks %q:\n%s", w, ud)
		}
	}
}
