package containerdtest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// BusyboxImage is a one-layer OCI image holding the host's static busybox
// (Debian busybox-static) as /bin/busybox with /bin/sh linked to it, and
// entrypoint as its Entrypoint. With entrypoint {"/bin/busybox", "sleep",
// "2147483647"} it serves as a pod sandbox image (containerd refuses one
// without an Entrypoint or Cmd). No registry is needed to make it.
func BusyboxImage(tb testing.TB, entrypoint ...string) v1.Image {
	tb.Helper()
	if _, err := os.Stat(busybox); err != nil {
		tb.Skipf("needs busybox-static (%v): run `make deps`", err)
	}
	img, err := NewBusyboxImage(entrypoint...)
	if err != nil {
		tb.Fatal(err)
	}
	return img
}

// busybox is Debian busybox-static's binary.
const busybox = "/bin/busybox"

// NewBusyboxImage is [BusyboxImage] for callers outside a test (a harness
// started by a command).
func NewBusyboxImage(entrypoint ...string) (v1.Image, error) {
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return nil, fmt.Errorf("containerdtest: %w (install busybox-static: make deps)", err)
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	tw.WriteHeader(&tar.Header{Name: "bin/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(bb))})
	tw.Write(bb)
	tw.WriteHeader(&tar.Header{Name: "bin/sh", Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777})
	for _, d := range []string{"proc/", "sys/", "dev/", "tmp/", "run/", "etc/"} {
		tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755})
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	raw := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(raw)), nil
	}, tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", "amd64"
	cf.Config.Entrypoint = entrypoint
	cf.Config.Env = []string{"PATH=/bin"}
	return mutate.ConfigFile(img, cf)
}

// WriteImageTar writes img, tagged ref, as an image tarball that `ctr
// images import` reads (docker save layout).
func WriteImageTar(tb testing.TB, img v1.Image, ref, path string) {
	tb.Helper()
	tag, err := name.NewTag(ref)
	if err != nil {
		tb.Fatal(err)
	}
	if err := tarball.WriteToFile(path, tag, img); err != nil {
		tb.Fatal(err)
	}
}
