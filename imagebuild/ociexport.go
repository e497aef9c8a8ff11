package imagebuild

import (
	"archive/tar"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Export writes the OCI image of the image directory dir as one tar file:
// the OCI image layout (oci-layout, index.json, blobs/sha256/…) plus the
// manifest.json that `docker load` reads, both naming the same blobs — the
// archive `ctr images import`, `docker load` (any version) and
// `podman load` accept. refName tags the image (default the name in the
// layout). The file is written atomically and is itself reproducible.
func Export(dir, file, refName string) error {
	img, layoutName, err := LoadOCI(dir)
	if err != nil {
		return err
	}
	if refName == "" {
		refName = layoutName
	}
	tag, err := name.NewTag(refName)
	if err != nil {
		return fmt.Errorf("imagebuild: export: tag %q: %v", refName, err)
	}
	raw, err := img.RawManifest()
	if err != nil {
		return err
	}
	m, err := img.Manifest()
	if err != nil {
		return err
	}
	d, err := img.Digest()
	if err != nil {
		return err
	}
	index := v1.IndexManifest{SchemaVersion: 2, MediaType: "application/vnd.oci.image.index.v1+json",
		Manifests: []v1.Descriptor{{MediaType: m.MediaType, Size: int64(len(raw)), Digest: d,
			Annotations: map[string]string{annotationRefName: tag.TagStr(), annotationContainerdName: tag.Name()}}}}
	indexJSON, err := json.Marshal(index)
	if err != nil {
		return err
	}
	blob := func(h v1.Hash) string { return "blobs/" + h.Algorithm + "/" + h.Hex }
	docker := []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}{{Config: blob(m.Config.Digest), RepoTags: []string{dockerTag(tag)}}}
	for _, l := range m.Layers {
		docker[0].Layers = append(docker[0].Layers, blob(l.Digest))
	}
	dockerJSON, err := json.Marshal(docker)
	if err != nil {
		return err
	}
	cfg, err := img.RawConfigFile()
	if err != nil {
		return err
	}
	layers, err := img.Layers()
	if err != nil {
		return err
	}

	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(file), "."+filepath.Base(file)+".tmp-")
	if err != nil {
		return fmt.Errorf("imagebuild: export: %w", err)
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	when := time.Unix(0, 0)
	if cf, err := img.ConfigFile(); err == nil {
		when = cf.Created.Time
	}
	add := func(p string, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Name: p, Mode: 0o644, Size: int64(len(data)), ModTime: when, Typeflag: tar.TypeReg, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	for _, dname := range []string{"blobs/", "blobs/sha256/"} {
		if err := tw.WriteHeader(&tar.Header{Name: dname, Mode: 0o755, ModTime: when, Typeflag: tar.TypeDir, Format: tar.FormatPAX}); err != nil {
			return err
		}
	}
	type entry struct {
		path string
		data []byte
		l    v1.Layer
	}
	entries := []entry{{path: blob(m.Config.Digest), data: cfg}, {path: blob(d), data: raw}}
	for i, l := range layers {
		entries = append(entries, entry{path: blob(m.Layers[i].Digest), l: l})
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].path < entries[j].path })
	seen := map[string]bool{}
	for _, e := range entries {
		if seen[e.path] {
			continue
		}
		seen[e.path] = true
		if e.l == nil {
			if err := add(e.path, e.data); err != nil {
				return err
			}
			continue
		}
		size, err := e.l.Size()
		if err != nil {
			return err
		}
		rc, err := e.l.Compressed()
		if err != nil {
			return err
		}
		err = tw.WriteHeader(&tar.Header{Name: e.path, Mode: 0o644, Size: size, ModTime: when, Typeflag: tar.TypeReg, Format: tar.FormatPAX})
		if err == nil {
			_, err = io.Copy(tw, rc)
		}
		rc.Close()
		if err != nil {
			return fmt.Errorf("imagebuild: export %s: %w", e.path, err)
		}
	}
	for _, f := range []struct {
		p string
		d []byte
	}{{"index.json", indexJSON}, {"manifest.json", dockerJSON}, {"oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`)}} {
		if err := add(f.p, f.d); err != nil {
			return err
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), file)
}

// dockerTag is the tag as docker prints it: docker.io/library/ and
// docker.io/ dropped.
func dockerTag(t name.Tag) string {
	repo := t.Context().RepositoryStr()
	if t.Context().RegistryStr() != name.DefaultRegistry {
		repo = t.Context().RegistryStr() + "/" + repo
	}
	return repo + ":" + t.TagStr()
}
