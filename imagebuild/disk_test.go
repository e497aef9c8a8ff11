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
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
	"gopkg.in/yaml.v3"
)

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
	vmdk, sum := ektest.VendorDisk(t)
	cache := t.TempDir()
	b := New(Options{CacheDir: cache})
	r := diskRecipe(t, "bake: false\ndisk:\n  path: "+vmdk+"\n  sha256: "+sum+"\n  cloudInit: true\n")
	out := filepath.Join(t.TempDir(), "vendor")
	res, err := b.Build(context.Background(), r, out)
	if err != nil {
		t.Fatal(err)
	}
	m := res.Image.Manifest
	if m.Kind != vmimage.KindDisk || m.Disk != DiskFile || m.DiskFormat != "qcow2" || m.Seed != SeedFile || m.Kernel != "" || m.QEMU.NICModel != "e1000" ||
		len(m.HostKeys) != 2 || m.Readiness.SerialRegex != CloudInitReadyRegex {
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
	vmdk, _ := ektest.VendorDisk(t)
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
	vmdk, sum := ektest.VendorDisk(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(filepath.Dir(vmdk))))
	defer srv.Close()
	for _, url := range []string{srv.URL + "/vendor.vmdk", "file://" + vmdk} {
		r := diskRecipe(t, "disk:\n  url: "+url+"\n  sha256: "+sum+"\n  format: vmdk\n")
		res, err := New(Options{CacheDir: t.TempDir()}).Build(context.Background(), r, filepath.Join(t.TempDir(), "v"))
		if err != nil {
			t.Errorf("%s: %v", url, err)
			continue
		}
		if m := res.Image.Manifest; m.Seed != "" || len(m.HostKeys) > 0 || m.Readiness.SerialRegex != "" {
			t.Errorf("%s: seed %q, host keys %v, serial regex %q without cloudInit", url, m.Seed, m.HostKeys, m.Readiness.SerialRegex)
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

// TestSeedISOLabel checks the seed with blkid (cloud-init reading it in a
// guest is TestDiskCloudInitBoots; this host has no iso9660 driver).
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
}

// TestSeedUserData decodes the generated user-data as cloud-init would and
// checks the users, hostname, runcmd and that the host keys it installs
// are the ones the manifest will list.
func TestSeedUserData(t *testing.T) {
	r, err := ParseRecipe("image.yaml", []byte("slug: vendor-x\nkind: disk\nbake: false\ndisk: {path: /dev/null, sha256: "+strings.Repeat("a", 64)+", cloudInit: true}\n"+
		"users:\n  - {name: antidote, password: pw, authorizedKeys: ['ssh-ed25519 AAAA k']}\n  - {name: ops, password: o, groups: [wheel]}\n"+
		"steps:\n  - touch /x\n  - |\n    echo 'a b' > /y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(r.Readiness.SerialRegex).MatchString("[ 58.7] cloud-init[384]: " + CloudInitReadyMarker + " hostname=vendor-x") {
		t.Errorf("readiness.serialRegex = %q; want the seed's final message by default", r.Readiness.SerialRegex)
	}
	s, err := NewSeed(r, "iid-2")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(s.UserData, []byte("#cloud-config\n")) {
		t.Errorf("user-data does not start with #cloud-config:\n%s", s.UserData)
	}
	if got, want := string(s.MetaData), "instance-id: iid-2\nlocal-hostname: vendor-x\n"; got != want {
		t.Errorf("meta-data = %q; want %q", got, want)
	}
	var cc map[string]any
	if err := yaml.Unmarshal(s.UserData, &cc); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"hostname": "vendor-x", "manage_etc_hosts": true, "preserve_hostname": false,
		"ssh_pwauth": true, "ssh_deletekeys": true, "ssh_genkeytypes": []any{},
		"final_message": CloudInitReadyMarker + " hostname=vendor-x datasource=$DATASOURCE up $UPTIME s"} {
		if !reflect.DeepEqual(cc[k], want) {
			t.Errorf("%s = %#v; want %#v", k, cc[k], want)
		}
	}
	users := cc["users"].([]any)
	antidote, ops := users[0].(map[string]any), users[1].(map[string]any)
	if antidote["name"] != "antidote" || antidote["plain_text_passwd"] != "pw" || antidote["sudo"] != "ALL=(ALL) NOPASSWD:ALL" ||
		antidote["lock_passwd"] != false || antidote["groups"] != "sudo" || !reflect.DeepEqual(antidote["ssh_authorized_keys"], []any{"ssh-ed25519 AAAA k"}) {
		t.Errorf("users[0] = %v", antidote)
	}
	if ops["groups"] != "wheel" || ops["sudo"] != nil {
		t.Errorf("users[1] = %v; want group wheel and no sudo rule", ops)
	}
	if want := []any{[]any{"sh", "-ec", "touch /x"}, []any{"sh", "-ec", "echo 'a b' > /y\n"}}; !reflect.DeepEqual(cc["runcmd"], want) {
		t.Errorf("runcmd = %#v; want %#v", cc["runcmd"], want)
	}
	keys := cc["ssh_keys"].(map[string]any)
	if len(keys) != 4 || len(s.HostKeys) != 2 {
		t.Fatalf("ssh_keys has %d entries, HostKeys %d; want 4 and 2", len(keys), len(s.HostKeys))
	}
	for _, hk := range s.HostKeys {
		name := map[string]string{"ssh-ed25519": "ed25519", "ecdsa-sha2-nistp256": "ecdsa"}[hk.Type]
		signer, err := ssh.ParsePrivateKey([]byte(keys[name+"_private"].(string)))
		if err != nil {
			t.Fatalf("%s_private: %v", name, err)
		}
		if fp := ssh.FingerprintSHA256(signer.PublicKey()); fp != hk.Fingerprint || keys[name+"_public"] != hk.PublicKey {
			t.Errorf("%s: private key %s, public %v; manifest says %+v", name, fp, keys[name+"_public"], hk)
		}
	}
	other, _ := NewSeed(r, "iid-2")
	if other.HostKeys[0].Fingerprint == s.HostKeys[0].Fingerprint {
		t.Error("two seeds share a host key")
	}
}

// TestBakeWithoutMarker: a disk whose bake boot never prints the bake
// marker (this vendor disk has no bootloader; SeaBIOS says so on the
// screen, not the serial console, so the console tail is empty here)
// fails the build after BakeTimeout with a *BuildVMError, leaves no
// temporary files and no QEMU, and the previous image stays.
func TestBakeWithoutMarker(t *testing.T) {
	ektest.RequireQEMU(t)
	vmdk, sum := ektest.VendorDisk(t)
	cache := t.TempDir()
	r := diskRecipe(t, "disk:\n  path: "+vmdk+"\n  sha256: "+sum+"\n  cloudInit: true\n")
	out := filepath.Join(t.TempDir(), "vendor")
	os.MkdirAll(out, 0o755)
	os.WriteFile(filepath.Join(out, "previous"), []byte("kept"), 0o644)
	start := time.Now()
	_, err := New(Options{CacheDir: cache, BakeTimeout: 20 * time.Second}).Build(context.Background(), r, out)
	var vmErr *BuildVMError
	if !errors.As(err, &vmErr) || !errors.Is(err, ErrBuildVM) || vmErr.What != "bake boot" ||
		!strings.Contains(err.Error(), `no "endpointkit: baked\\b" on the console after 20s`) || !strings.Contains(err.Error(), "console tail:") {
		t.Fatalf("Build = %v; want a bake boot error with the console tail", err)
	}
	if time.Since(start) > 3*time.Minute {
		t.Errorf("took %s for a 20 s bake timeout", time.Since(start))
	}
	if got := leftovers(cache, filepath.Join(cache, "images"), filepath.Dir(out)); len(got) > 0 {
		t.Errorf("temporary files left: %v", got)
	}
	if got, _ := os.ReadFile(filepath.Join(out, "previous")); string(got) != "kept" {
		t.Errorf("previous output changed: %q", got)
	}
}
