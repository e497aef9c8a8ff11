package imagebuild

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/endpointkit/endpointkit/vmimage"
)

// httpGet opens an http(s) URL for reading.
func httpGet(ctx context.Context, url string) (io.ReadCloser, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: download %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		return nil, fmt.Errorf("imagebuild: download %s: %s", url, resp.Status)
	}
	return resp.Body, nil
}

// buildDisk puts the vendor disk into the raw-image store (verifying its
// sha256), converts it to qcow2 and adds a cloud-init seed when asked (its
// SSH host keys go into the manifest). The disk boots from its own
// bootloader.
func (b *Builder) buildDisk(ctx context.Context, r *Recipe, dir string) (*vmimage.Manifest, error) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		return nil, fmt.Errorf("imagebuild: kind disk needs qemu-img: %w (run `make deps`)", ErrMissingTool)
	}
	d := r.Disk
	raw := filepath.Join(dir, ".source")
	defer os.Remove(raw)
	if err := b.fromStore(ctx, r, "disk", d, raw); err != nil {
		return nil, err
	}
	format := d.Format
	if format == "" {
		var err error
		if format, err = qemuImgFormat(ctx, raw); err != nil {
			return nil, err
		}
	}
	b.progress.Step(fmt.Sprintf("convert %s disk to qcow2", format))
	if out, err := exec.CommandContext(ctx, "qemu-img", "convert", "-f", format, "-O", "qcow2", "-c", "-o", "compression_type=zstd",
		raw, filepath.Join(dir, DiskFile)).CombinedOutput(); err != nil {
		return nil, r.errAt("disk.format", "qemu-img convert from %s: %v: %s", format, err, lastLines(out, 3))
	}
	m := baseManifest(r)
	m.Disk, m.DiskFormat = DiskFile, "qcow2"
	if m.QEMU.MemoryMiB == 0 {
		m.QEMU.MemoryMiB = 1024
	}
	if d.CloudInit {
		if err := b.firstBoot(ctx, r, dir, m, "endpointkit-"+r.Slug+"-"+d.SHA256[:12]); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// qemuImgFormat asks qemu-img which format a disk image has.
func qemuImgFormat(ctx context.Context, path string) (string, error) {
	out, err := exec.CommandContext(ctx, "qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		return "", fmt.Errorf("imagebuild: qemu-img info %s: %w", path, err)
	}
	var info struct {
		Format string `json:"format"`
	}
	if err := json.Unmarshal(out, &info); err != nil || info.Format == "" {
		return "", fmt.Errorf("imagebuild: qemu-img info %s: no format in %q", path, out)
	}
	return info.Format, nil
}

// fromStore copies the source (a vendor disk, an installer ISO; field
// names it in the recipe) to dst: from the raw-image store, after putting
// it there on first use. The store keeps only bytes whose sha256 is
// src.SHA256; a mismatch leaves nothing in it.
func (b *Builder) fromStore(ctx context.Context, r *Recipe, field string, src *DiskSource, dst string) error {
	surl := b.opts.StoreURL
	if surl == "" {
		surl = storeURL(b.opts.CacheDir)
	}
	store, err := OpenStore(ctx, surl)
	if err != nil {
		return err
	}
	defer store.Close()
	has, err := store.Has(ctx, src.SHA256)
	if err != nil {
		return fmt.Errorf("imagebuild: store %s: %w", surl, err)
	}
	if !has {
		name := cmp.Or(src.Path, src.URL)
		b.progress.Step(fmt.Sprintf("fetch %s %s", field, name))
		rc, err := openSource(ctx, src)
		if err != nil {
			return r.errAt(field, "%v", err)
		}
		err = store.Put(ctx, src.SHA256, rc)
		rc.Close()
		if errors.Is(err, ErrChecksum) {
			return r.errAt(field+".sha256", "%s: %v: if the vendor published a new image, put its sha256 here; else the copy at %s is damaged", name, err, name)
		}
		if err != nil {
			return r.errAt(field+".sha256", "%s: %v", name, err)
		}
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	err = store.Get(ctx, src.SHA256, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
