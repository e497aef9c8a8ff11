package imagebuild

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/vmimage"
)

// TestRecipeNICsAntidoteFRR: the frr example recipe lays its NICs out as
// Antidote's frr image did, and naming path gives them that image's names.
func TestRecipeNICsAntidoteFRR(t *testing.T) {
	r, err := LoadRecipe(filepath.Join("..", "examples", "images", "frr"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	var want []string
	for i := 1; i <= 7; i++ {
		want = append(want, fmt.Sprintf("enp0s3f%d", i))
	}
	if strings.Join(r.NetworkInterfaces, " ") != strings.Join(want, " ") || r.NICs.ManagementName != "enp0s3f0" {
		t.Fatalf("names %v, management %q; want %v and enp0s3f0", r.NetworkInterfaces, r.NICs.ManagementName, want)
	}
	m := baseManifest(r)
	l := m.Layout()
	if l.Capacity() != 7 || l.String() != "virtio-net-pci: management at 03.0 (enp0s3f0), data NICs at functions 1-7 of slot 3" {
		t.Errorf("layout %s holds %d", l, l.Capacity())
	}
	first, _ := l.DataNIC(1)
	if first.Name != "enp0s3f1" || first.Addr != (vmimage.PCIAddr{Slot: 3, Function: 1}) {
		t.Errorf("the lesson's first link is %+v; want enp0s3f1 at 03.1", first)
	}
	renamed := renamedNICs(l)
	if len(renamed) != 8 {
		t.Fatalf("renamed %v; want all 8", renamed)
	}
	path, body := linkFile(renamed[1])
	if path != "/etc/systemd/network/10-endpointkit-enp0s3f1.link" || !strings.Contains(string(body), "[Match]\nPath=pci-0000:00:03.1\n") ||
		!strings.Contains(string(body), "[Link]\nName=enp0s3f1\n") {
		t.Errorf("%s:\n%s", path, body)
	}
	meta, err := metaYAML(r, m)
	if err != nil || !strings.Contains(string(meta), "networkInterfaces:\n  - enp0s3f1\n") {
		t.Errorf("image.meta.yaml (%v):\n%s", err, meta)
	}
}

// TestRecipeNICsNamed: explicit names are kept, the kernel's eth names
// need no renaming, and the default layout is the launcher's historic one.
func TestRecipeNICsNamed(t *testing.T) {
	r, err := ParseRecipe("image.yaml", []byte("slug: x\nkind: initramfs\nnetworkInterfaces: [swp1, swp2]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	l := r.layout()
	var got []string
	for _, n := range renamedNICs(l) {
		got = append(got, n.Name+"@"+n.Addr.String())
	}
	if strings.Join(got, " ") != "swp1@03.0 swp2@04.0" || l.Capacity() != 24 {
		t.Errorf("renamed %v (capacity %d); want swp1@03.0 swp2@04.0", got, l.Capacity())
	}
}

func TestRecipeNICsErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image.yaml")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"empty function 0", "slug: x\nkind: initramfs\nnics:\n  placement: functions\n  data: {slot: 4, function: 1}\n",
			[]string{path + ":5:29: nics.data.function: 1: function 0 of slot 4 would be empty"}},
		{"placement typo", "slug: x\nkind: initramfs\nnics: {placement: function}\n",
			[]string{path + `:3:19: nics.placement: "function": want slots or functions; did you mean "functions"?`}},
		{"naming", "slug: x\nkind: initramfs\nnics: {naming: udev}\n", []string{`nics.naming: "udev": want kernel or path`}},
		{"slot", "slug: x\nkind: initramfs\nnics:\n  management: {slot: 1}\n", []string{path + ":4:22: nics.management.slot: 1: NICs go in slots 2-26"}},
		{"too many names", "slug: x\nkind: initramfs\nnics: {placement: functions, data: {slot: 5}}\nnetworkInterfaces: [a, b, c, d, e, f, g, h, i]\n",
			[]string{path + ":4:20: networkInterfaces: 9 names for a layout holding 8"}},
		{"duplicate name", "slug: x\nkind: initramfs\nnetworkInterfaces: [swp1, swp1]\n", []string{path + `:3:27: networkInterfaces[1]: "swp1" is also networkInterfaces[0]`}},
		{"model", "slug: x\nkind: initramfs\nqemu: {nicModel: virtio-net-device}\n", []string{path + `:3:18: qemu.nicModel: "virtio-net-device" is not a PCI NIC`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.WriteFile(path, []byte(tc.yaml), 0o644)
			r, err := LoadRecipe(path)
			if err != nil {
				t.Fatalf("LoadRecipe: %v", err)
			}
			err = r.Resolve()
			for _, w := range tc.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("Resolve = %v; want an error containing %q", err, w)
				}
			}
		})
	}
}
