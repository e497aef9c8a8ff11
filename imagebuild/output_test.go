package imagebuild

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/endpointkit/endpointkit/vmimage"
)

// golden compares got with testdata/golden/name, rewriting it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", "golden", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./imagebuild -run Golden -args -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file (rerun with -args -update if intended):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func TestGoldenGeneratedFiles(t *testing.T) {
	for _, slug := range []string{"tiny", "frr"} {
		t.Run(slug, func(t *testing.T) {
			r, err := LoadRecipe(filepath.Join("..", "examples", "images", slug))
			if err != nil {
				t.Fatal(err)
			}
			if err := r.Resolve(); err != nil {
				t.Fatal(err)
			}
			m := baseManifest(r)
			switch r.Kind {
			case "initramfs":
				m.Kernel, m.Initrd = KernelFile, InitramfsFile
			default:
				m.Kernel, m.Initrd, m.Disk = KernelFile, InitrdFile, DiskFile
			}
			m.Artifacts = map[string]string{m.Kernel: "", m.Initrd: "", MetaFile: ""}
			if m.Disk != "" {
				m.Artifacts[m.Disk] = ""
			}
			meta, err := metaYAML(r, m)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, slug+".image.meta.yaml", meta)
			dir := t.TempDir()
			c, err := containerFilesFor(m, "../examples/images/"+slug)
			if err != nil {
				t.Fatal(err)
			}
			if err := writeContainerFiles(dir, c); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{DockerfileFile, MakefileFile} {
				raw, err := os.ReadFile(filepath.Join(dir, f))
				if err != nil {
					t.Fatal(err)
				}
				golden(t, slug+"."+f, raw)
			}
		})
	}
}

func TestVerifyArtifacts(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "vmlinux"), []byte("kernel"), 0o644)
	sum, _ := vmimage.FileSHA256(filepath.Join(dir, "vmlinux"))
	im := &vmimage.Image{Dir: dir, Manifest: vmimage.Manifest{Artifacts: map[string]string{"vmlinux": sum}}}
	if err := VerifyArtifacts(im); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "vmlinux"), []byte("tampered"), 0o644)
	if err := VerifyArtifacts(im); err == nil {
		t.Fatal("VerifyArtifacts accepted a changed file")
	}
}
