package imagetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
)

// The Debian installer's network boot images, from the package
// debian-installer-12-netboot-amd64 (text frontend).
const (
	netbootPackage = "debian-installer-12-netboot-amd64"
	netbootDir     = "/usr/lib/debian-installer/images/12/amd64/text/debian-installer/amd64"
)

// DebianInstallerISO returns a bootable installer ISO made from Debian's
// own network installer (package debian-installer-12-netboot-amd64): its
// kernel and initrd at /linux and /initrd.gz, with ISOLINUX to boot them
// from the BIOS, made with xorriso — and its sha256. It installs from a
// Debian mirror over the network. It is made once per package version
// into the test cache (a few seconds).
func DebianInstallerISO(tb testing.TB) (path, sum string) {
	tb.Helper()
	ektest.RequireTool(tb, "xorriso", "dpkg-query")
	for _, f := range []string{netbootDir + "/linux", netbootDir + "/initrd.gz", "/usr/lib/ISOLINUX/isolinux.bin", "/usr/lib/syslinux/modules/bios/ldlinux.c32"} {
		if _, err := os.Stat(f); err != nil {
			tb.Skipf("needs %s (packages %s, isolinux, syslinux-common): run `make deps`", f, netbootPackage)
		}
	}
	out, err := exec.Command("dpkg-query", "-W", "-f=${Version}", netbootPackage).Output()
	if err != nil {
		tb.Fatalf("imagetest: dpkg-query %s: %v", netbootPackage, err)
	}
	version := strings.NewReplacer(":", "_", "+", "_", "~", "_").Replace(strings.TrimSpace(string(out)))
	dir := filepath.Join(ektest.CacheDir(tb), "imagebuild", "vendor")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		tb.Fatal(err)
	}
	path = filepath.Join(dir, "debian-netboot-"+version+".iso")
	if _, err := os.Stat(path); err != nil {
		start := time.Now()
		if err := makeInstallerISO(dir, path); err != nil {
			tb.Fatalf("imagetest: installer ISO: %v", err)
		}
		tb.Logf("imagetest: installer ISO %s made in %s", path, time.Since(start).Round(100*time.Millisecond))
	}
	return path, fileSHA256(tb, path)
}

// makeInstallerISO lays out the ISO's tree in a work directory beside dst
// and masters it with xorriso (El Torito, ISOLINUX, Rock Ridge and Joliet
// names).
func makeInstallerISO(dir, dst string) error {
	work, err := os.MkdirTemp(dir, ".work-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	root := filepath.Join(work, "root")
	if err := os.MkdirAll(filepath.Join(root, "isolinux"), 0o755); err != nil {
		return err
	}
	copies := map[string]string{
		netbootDir + "/linux":                        "linux",
		netbootDir + "/initrd.gz":                    "initrd.gz",
		"/usr/lib/ISOLINUX/isolinux.bin":             "isolinux/isolinux.bin",
		"/usr/lib/syslinux/modules/bios/ldlinux.c32": "isolinux/ldlinux.c32",
	}
	for src, rel := range copies {
		raw, err := os.ReadFile(src)
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(root, rel), raw, 0o644); err != nil {
			return err
		}
	}
	cfg := "serial 0 115200\ndefault install\nprompt 0\nlabel install\n  kernel /linux\n  append initrd=/initrd.gz console=ttyS0,115200n8 ---\n"
	if err := os.WriteFile(filepath.Join(root, "isolinux", "isolinux.cfg"), []byte(cfg), 0o644); err != nil {
		return err
	}
	tmp := filepath.Join(work, "installer.iso")
	cmd := exec.Command("xorriso", "-as", "mkisofs", "-o", tmp, "-V", "DEBIAN_NETBOOT", "-J", "-R",
		"-b", "isolinux/isolinux.bin", "-c", "isolinux/boot.cat", "-no-emul-boot", "-boot-load-size", "4", "-boot-info-table", root)
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("xorriso: %v: %s", err, out)
	}
	return os.Rename(tmp, dst)
}
