package imagebuild

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseRecipeErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image.yaml")
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"unknown top key", "slug: x\nkind: initramfs\nsulg: y\n", path + `:3:1: sulg: unknown key "sulg"`},
		{"unknown nested key", "slug: x\nkind: initramfs\nqemu:\n  memory: 5\n", path + `:4:3: qemu.memory: unknown key "memory"`},
		{"unknown key in list item", "slug: x\nkind: initramfs\nusers:\n  - name: a\n    pasword: b\n", path + `:5:5: users[0].pasword: unknown key`},
		{"wrong type", "slug: x\nkind: initramfs\nqemu:\n  memoryMiB: lots\n", path + `:4:14: qemu.memoryMiB: want an integer, got "lots"`},
		{"list expected", "slug: x\nkind: debootstrap\npackages: frr\n", path + `:3:11: packages: want a list`},
		{"mapping expected", "- a\n- b\n", path + `:1:1: want a mapping, got a list`},
		{"duplicate key", "slug: x\nslug: y\nkind: initramfs\n", path + `:2:1`},
		{"syntax", "slug: [x\n", path + ":"},
		{"empty", "", path + `:1:1: empty recipe`},
		{"bool", "slug: x\nkind: initramfs\ndhcp: maybe\n", path + `:3:7: dhcp: want true or false`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseRecipe(path, []byte(tc.yaml))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("ParseRecipe = %v; want an error containing %q", err, tc.want)
			}
			var re *RecipeError
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *RecipeError", err)
			}
		})
	}
}

func TestResolveErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "image.yaml")
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"missing slug and kind", "description: d\n", []string{"slug: missing", "kind: missing"}},
		{"bad kind", "slug: x\nkind: vm\n", []string{path + `:2:7: kind: "vm": want one of initramfs, debootstrap, disk`}},
		{"bad slug", "slug: a/b\nkind: initramfs\n", []string{path + `:1:7: slug: "a/b"`}},
		{"missing base file", "slug: x\nkind: initramfs\nfiles:\n  - src: nothere.conf\n    dst: /etc/x\n", []string{path + `:4:10: files[0].src: missing base file`}},
		{"relative dst", "slug: x\nkind: initramfs\nfiles:\n  - src: .\n    dst: etc/x\n", []string{`files[0].dst: "etc/x": want an absolute path`}},
		{"packages on initramfs", "slug: x\nkind: initramfs\npackages: [frr]\n", []string{path + `:3:11: packages: only used by kind debootstrap`}},
		{"disk without sha", "slug: x\nkind: disk\ndisk:\n  path: " + path + "\n", []string{"disk.sha256: want the 64 lower-case hex digits"}},
		{"disk missing file", "slug: x\nkind: disk\ndisk:\n  path: vendor.qcow2\n  sha256: " + strings.Repeat("a", 64) + "\n", []string{path + `:4:9: disk.path: missing base file`}},
		{"user without login", "slug: x\nkind: initramfs\nusers:\n  - name: bob\n", []string{`users[0]: user "bob" has neither password nor authorizedKeys`}},
		{"root user", "slug: x\nkind: initramfs\nusers:\n  - name: root\n    password: x\n", []string{"users[0].name: root is not a login user"}},
		{"bad regex", "slug: x\nkind: initramfs\nreadiness:\n  serialRegex: '('\n", []string{"readiness.serialRegex: error parsing regexp"}},
		{"steps on initramfs", "slug: x\nkind: initramfs\nsteps: [true]\n", []string{path + `:3:8: steps: only used by kind debootstrap`}},
		{"steps on disk without cloud-init", "slug: x\nkind: disk\ndisk:\n  path: " + path + "\n  sha256: " + strings.Repeat("a", 64) + "\nsteps: [true]\n",
			[]string{path + `:6:8: steps: a disk image runs steps at first boot through cloud-init: set disk.cloudInit`}},
		{"bad mirror", "slug: x\nkind: debootstrap\nmirror: deb.debian.org\n", []string{`mirror: "deb.debian.org": want an http://`}},
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

func TestResolveDefaults(t *testing.T) {
	r, err := ParseRecipe("image.yaml", []byte("slug: x\nkind: debootstrap\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	if len(r.Users) != 1 || r.Users[0].Name != DefaultUser || r.Users[0].Password != DefaultPassword ||
		strings.Join(r.Users[0].Groups, ",") != "sudo" || r.Users[0].Shell != "/bin/bash" {
		t.Errorf("default users = %+v", r.Users)
	}
	if r.Suite != DefaultSuite || r.Mirror != DefaultMirror || r.Kernel.Package != DefaultKernel || r.APIs.SSH != 22 || !*r.DHCP {
		t.Errorf("defaults not applied: %+v", r)
	}
	if r.Readiness.SerialRegex == "" || len(r.Readiness.SSHPorts) != 1 {
		t.Errorf("readiness defaults = %+v", r.Readiness)
	}
}

func TestExampleRecipesResolve(t *testing.T) {
	paths, _ := filepath.Glob("../examples/images/*")
	for _, p := range paths {
		r, err := LoadRecipe(p)
		if err != nil {
			t.Errorf("%s: %v", p, err)
			continue
		}
		if err := r.Resolve(); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

// FuzzParseRecipe: decoding and resolving arbitrary input never panics,
// and every parse error is a located *RecipeError.
func FuzzParseRecipe(f *testing.F) {
	paths, _ := filepath.Glob("../examples/images/*/image.yaml")
	for _, p := range paths {
		raw, _ := os.ReadFile(p)
		f.Add(raw)
	}
	f.Add([]byte("slug: x\nkind: disk\ndisk: {url: http://x, sha256: 00}\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseRecipe("fuzz.yaml", raw)
		if err != nil {
			var re *RecipeError
			if !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q is not a located RecipeError", err)
			}
			return
		}
		r.Dir = t.TempDir()
		r.Resolve()
	})
}
