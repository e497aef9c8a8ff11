package ektest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/endpointkit/endpointkit/vmimage"
)

// VendorDisk makes a small vmdk (2 MiB of recognisable bytes) standing in
// for a vendor disk that only needs fetching, verifying and converting,
// and returns its path and sha256. It needs qemu-img, not root. It lives
// here rather than in imagetest so that imagebuild's own tests can use it.
func VendorDisk(tb testing.TB) (path, sum string) {
	tb.Helper()
	RequireTool(tb, "qemu-img")
	dir := tb.TempDir()
	raw := filepath.Join(dir, "vendor.raw")
	data := bytes.Repeat([]byte("endpointkit vendor disk "), 100000)
	if err := os.WriteFile(raw, data[:2<<20], 0o644); err != nil {
		tb.Fatal(err)
	}
	path = filepath.Join(dir, "vendor.vmdk")
	if out, err := exec.Command("qemu-img", "convert", "-f", "raw", "-O", "vmdk", raw, path).CombinedOutput(); err != nil {
		tb.Fatalf("qemu-img: %v %s", err, out)
	}
	sum, err := vmimage.FileSHA256(path)
	if err != nil {
		tb.Fatal(err)
	}
	return path, sum
}
