package imagebuild

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestParseRecipeErrors asserts the exact text of every parse problem:
// PATH:LINE:COL: FIELD: MESSAGE, all of a file's problems in one pass.
func TestParseRecipeErrors(t *testing.T) {
	const path = "/r/image.yaml"
	bomb := "m1: &m1 [{}, {}, {}, {}, {}, {}, {}, {}, {}]\n" +
		"m2: &m2 [*m1, *m1, *m1, *m1, *m1, *m1, *m1, *m1, *m1]\n" +
		"m3: &m3 [*m2, *m2, *m2, *m2, *m2, *m2, *m2, *m2, *m2]\n" +
		"m4: &m4 [*m3, *m3, *m3, *m3, *m3, *m3, *m3, *m3, *m3]\n" +
		"users:\n  - <<: *m4\n"
	for _, tc := range []struct {
		name, yaml string
		want       []string // every problem after "PATH:", in order
	}{
		{"unknown top key", "slug: x\nkind: initramfs\nsulg: y\n", []string{`3:1: sulg: unknown key; did you mean "slug"?`}},
		{"unknown nested key", "slug: x\nkind: initramfs\nqemu:\n  memory: 5\n",
			[]string{`4:3: qemu.memory: unknown key (known here: memoryMiB, cpus, machine, cpu, nicModel, diskBus, extraArgs)`}},
		{"unknown key in list item", "slug: x\nkind: initramfs\nusers:\n  - name: a\n    pasword: b\n",
			[]string{`5:5: users[0].pasword: unknown key; did you mean "password"?`}},
		{"wrong type", "slug: x\nkind: initramfs\nqemu:\n  memoryMiB: lots\n", []string{`4:14: qemu.memoryMiB: want a whole number, got "lots"`}},
		{"list expected", "slug: x\nkind: debootstrap\npackages: frr\n", []string{`3:11: packages: want a list, got "frr"`}},
		{"text expected", "slug: x\nkind: initramfs\nqemu: {cpu: [a]}\n", []string{`3:13: qemu.cpu: want text, got a list`}},
		{"mapping expected", "- a\n- b\n", []string{`1:1: want a mapping (key: value lines), got a list`}},
		{"duplicate key", "slug: x\nslug: y\nkind: initramfs\n",
			[]string{`2:1: slug: key given twice (first at line 1); the last one is used, remove the other`}},
		{"syntax", "slug: [x\n", []string{`2:1: not valid YAML: did not find expected ',' or ']'`}},
		{"syntax on a later line", "slug: x\nkind: initramfs\nqemu:\n\tcpus: 2\n",
			[]string{`4:1: not valid YAML: found character that cannot start any token`}},
		{"empty", "", []string{`1:1: empty recipe: want a mapping with at least slug and kind`}},
		{"null", "~\n", []string{`1:1: empty recipe: want a mapping with at least slug and kind`}},
		{"bool", "slug: x\nkind: initramfs\ndhcp: maybe\n", []string{`3:7: dhcp: want true or false, got "maybe"`}},
		{"all in one pass", "slug: x\nkind: initramfs\nsulg: y\nqemu:\n  memoryMiB: lots\n  cpu: [a]\nusers:\n  - name: a\n    pasword: b\n", []string{
			`3:1: sulg: unknown key; did you mean "slug"?`,
			`5:14: qemu.memoryMiB: want a whole number, got "lots"`,
			`6:8: qemu.cpu: want text, got a list`,
			`9:5: users[0].pasword: unknown key; did you mean "password"?`,
		}},
		{"alias bomb", bomb, []string{
			`1:1: m1: unknown key (known here: slug, description, kind, flavor, kernel, agent, suite, mirror, packages, services, diskSizeMiB, disk, iso, bake, users, apis, dhcp, files, steps, networkInterfaces, nics, tests, qemu, readiness)`,
			// Where the expansion ran out of budget.
			`1:34: aliases expand to far more nodes than the file holds; refusing to expand them (write the values out)`,
			`2:1: m2: unknown key (known here: slug, description, kind, flavor, kernel, agent, suite, mirror, packages, services, diskSizeMiB, disk, iso, bake, users, apis, dhcp, files, steps, networkInterfaces, nics, tests, qemu, readiness)`,
			`3:1: m3: unknown key (known here: slug, description, kind, flavor, kernel, agent, suite, mirror, packages, services, diskSizeMiB, disk, iso, bake, users, apis, dhcp, files, steps, networkInterfaces, nics, tests, qemu, readiness)`,
			`4:1: m4: unknown key (known here: slug, description, kind, flavor, kernel, agent, suite, mirror, packages, services, diskSizeMiB, disk, iso, bake, users, apis, dhcp, files, steps, networkInterfaces, nics, tests, qemu, readiness)`,
		}},
		{"too large", "#" + strings.Repeat(" ", 1<<20), []string{` 1048577 bytes; an image recipe may be at most 1048576 bytes (1 MiB)`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := ParseRecipe(path, []byte(tc.yaml))
			if r != nil || err == nil {
				t.Fatalf("ParseRecipe = %v, %v; want an error", r, err)
			}
			var want []string
			for _, w := range tc.want {
				want = append(want, path+":"+w)
			}
			if got := err.Error(); got != strings.Join(want, "\n") {
				t.Errorf("ParseRecipe error:\n%s\nwant:\n%s", got, strings.Join(want, "\n"))
			}
			var re *RecipeError
			if !errors.As(err, &re) {
				t.Fatalf("error %T is not a *RecipeError", err)
			}
		})
	}
}

// TestParseRecipeLenient: what lesson metafiles accept, recipes accept too:
// aliases and merge keys, yaml.v2's booleans and whole floats, a null value
// as an absent one; a second document is a warning.
func TestParseRecipeLenient(t *testing.T) {
	r, err := ParseRecipe("image.yaml", []byte("slug: x\nkind: initramfs\ndhcp: no\nqemu: {memoryMiB: 512.0}\n"+
		"users:\n  - &u {name: a, password: b}\n  - <<: *u\n    name: c\ndescription:\n---\nslug: y\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Slug != "x" || r.DHCP == nil || *r.DHCP || r.QEMU.MemoryMiB != 512 || r.Description != "" {
		t.Errorf("recipe = %+v", r)
	}
	if len(r.Users) != 2 || r.Users[1].Name != "c" || r.Users[1].Password != "b" {
		t.Errorf("users = %+v; want a and c, both with password b", r.Users)
	}
	const warn = "image.yaml:10:1: warning: a second YAML document is ignored; an image recipe holds one (remove the extra `---` and what follows)"
	if len(r.Warnings) != 1 || r.Warnings[0].Error() != warn || !r.Warnings[0].Warning {
		t.Errorf("warnings = %v; want [%s]", r.Warnings, warn)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	r, err = ParseRecipe("image.yaml", []byte("slug:\nkind: initramfs\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err == nil || err.Error() != "image.yaml:1:6: slug: missing: name the image (letters, digits, -)" {
		t.Errorf("Resolve = %v; want the missing slug at 1:6", err)
	}
}

func TestLoadRecipeTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "image.yaml")
	if err := os.WriteFile(path, []byte("#"+strings.Repeat(" ", 2<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := LoadRecipe(path)
	want := path + ": larger than 1048576 bytes (1 MiB); an image recipe is never that big"
	if err == nil || err.Error() != want {
		t.Fatalf("LoadRecipe = %v; want %s", err, want)
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
		{"kind typo", "slug: x\nkind: initramf\n", []string{path + `:2:7: kind: "initramf": want one of initramfs, debootstrap, disk, iso; did you mean "initramfs"?`}},
		{"enum typos", "slug: x\nkind: disk\nflavor: Trusted\ndisk: {path: " + path + ", sha256: " + strings.Repeat("a", 64) + ", format: qcow}\nqemu: {diskBus: virtio-blk}\n", []string{
			path + `:3:9: flavor: "Trusted": want trusted, untrusted or legacy; did you mean "trusted"?`,
			path + `:4:` + strconv.Itoa(len(path)+98) + `: disk.format: "qcow": want qcow2, vmdk or raw; did you mean "qcow2"?`,
			path + `:5:17: qemu.diskBus: "virtio-blk": want virtio, ide or scsi`,
		}},
		{"bad slug", "slug: a/b\nkind: initramfs\n", []string{path + `:1:7: slug: "a/b"`}},
		{"missing base file", "slug: x\nkind: initramfs\nfiles:\n  - src: nothere.conf\n    dst: /etc/x\n", []string{path + `:4:10: files[0].src: missing base file`}},
		{"relative dst", "slug: x\nkind: initramfs\nfiles:\n  - src: .\n    dst: etc/x\n", []string{`files[0].dst: "etc/x": want an absolute path`}},
		{"packages on initramfs", "slug: x\nkind: initramfs\npackages: [frr]\n", []string{path + `:3:11: packages: only used by kind debootstrap`}},
		{"disk without sha", "slug: x\nkind: disk\ndisk:\n  path: " + path + "\n", []string{"disk.sha256: want the 64 lower-case hex digits"}},
		{"disk missing file", "slug: x\nkind: disk\ndisk:\n  path: vendor.qcow2\n  sha256: " + strings.Repeat("a", 64) + "\n", []string{path + `:4:9: disk.path: missing base file`}},
		{"user without login", "slug: x\nkind: initramfs\nusers:\n  - name: bob\n", []string{`users[0]: user "bob" has neither password nor authorizedKeys`}},
		{"root user", "slug: x\nkind: initramfs\nusers:\n  - name: root\n    password: x\n", []string{"users[0].name: root is not a login user"}},
		{"bad regex", "slug: x\nkind: initramfs\nreadiness:\n  serialRegex: '('\n", []string{"readiness.serialRegex: error parsing regexp"}},
		{"steps on initramfs", "slug: x\nkind: initramfs\nsteps: [true]\n", []string{path + `:3:8: steps: only used by kinds debootstrap and iso`}},
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
	if r.Suite != DefaultSuite || r.Mirror != DefaultMirror || r.Kernel.Package != DefaultKernel || r.APIs.SSH.Port != 22 || !*r.DHCP {
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
// every parse error is a located *RecipeError, every warning a located
// warning.
func FuzzParseRecipe(f *testing.F) {
	paths, _ := filepath.Glob("../examples/images/*/image.yaml")
	for _, p := range paths {
		raw, _ := os.ReadFile(p)
		f.Add(raw)
	}
	f.Add([]byte("slug: x\nkind: disk\ndisk: {url: http://x, sha256: 00}\n"))
	f.Add([]byte("a: &x [1]\nb: *x\n"))
	f.Add([]byte("slug: x\nkind: iso\nbake: no\niso: {url: http://x/d.iso, sha256: 00, kernel: /k, answers: {format: preseed, file: p.cfg}}\n"))
	f.Add([]byte("slug: x\nkind: debootstrap\napis: {ssh: 2222, netconf: yes, http: {port: 8080}}\ntests: [{name: t, run: 'true'}]\n"))
	f.Add([]byte("slug: x\nsulg: y\nusers: [{<<: {name: a}, pasword: p}]\n---\nkind: disk\n"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		r, err := ParseRecipe("fuzz.yaml", raw)
		if err != nil {
			var re *RecipeError
			if !errors.As(err, &re) || !strings.HasPrefix(err.Error(), "fuzz.yaml") {
				t.Fatalf("error %q is not a located RecipeError", err)
			}
			joined, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("error %T does not join its problems", err)
			}
			for _, e := range joined.Unwrap() {
				if re, ok := e.(*RecipeError); !ok || re.Warning || !strings.HasPrefix(re.Error(), "fuzz.yaml") {
					t.Fatalf("error %q is not a located RecipeError", e)
				}
			}
			return
		}
		for _, w := range r.Warnings {
			if !w.Warning || !strings.HasPrefix(w.Error(), "fuzz.yaml:") {
				t.Fatalf("warning %q is not a located warning", w)
			}
		}
		r.Dir = t.TempDir()
		r.Resolve()
	})
}

// TestAPIs: the declarative APIs read true, false or a port, turn into
// manifest ports and readiness checks, and bad values name their line.
func TestAPIs(t *testing.T) {
	r, err := ParseRecipe("image.yaml", []byte("slug: x\nkind: debootstrap\napis: {ssh: true, netconf: yes, http: {port: 8080}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	m := baseManifest(r)
	if m.APIs.SSH != 22 || m.APIs.NETCONF != 830 || !slices.Equal(m.APIs.HTTP, []int{8080}) {
		t.Errorf("manifest APIs = %+v", m.APIs)
	}
	if !slices.Equal(m.Readiness.SSHPorts, []int{22, 830}) || !slices.Equal(m.Readiness.TCPPorts, []int{8080}) {
		t.Errorf("readiness = %+v; want SSH on 22 and 830, TCP 8080", m.Readiness)
	}
	setup := r.apis()
	if !slices.Contains(setup.Packages, "netconfd") || !slices.Contains(setup.Services, "netconfd.service") || len(setup.Files) != 2 ||
		!strings.Contains(setup.Files[0].Content, "--superuser=antidote") || !strings.Contains(setup.Files[1].Content, "Port 830") {
		t.Errorf("netconf setup = %+v", setup)
	}

	for _, tc := range []struct{ yaml, want string }{
		{"apis: {ssh: false}", "image.yaml:3:13: apis.ssh: cannot be off"},
		{"apis: {netconf: 70000}", "image.yaml:3:17: apis.netconf: want a port in 1-65535 (or true for the standard port), got the number 70000"},
		{"apis: {netconf: [830]}", "image.yaml:3:17: apis.netconf: want a single value, got a list"},
		{"apis: {netconf: 22}", "apis.netconf: port 22 is SSH's"},
		{"apis: {http: {port: 0}}", "apis.http.port: port 0 out of range"},
		{"tests: [{name: x}]", "tests[0].run: missing"},
	} {
		r, err := ParseRecipe("image.yaml", []byte("slug: x\nkind: debootstrap\n"+tc.yaml+"\n"))
		if err == nil {
			err = r.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v; want %q", tc.yaml, err, tc.want)
		}
	}
	r, _ = ParseRecipe("image.yaml", []byte("slug: x\nkind: initramfs\napis: {netconf: true}\n"))
	if err := r.Resolve(); err == nil || !strings.Contains(err.Error(), "no NETCONF server") {
		t.Errorf("netconf on the tiny image: %v", err)
	}
}

// TestResolveISOAndBake: kind iso needs its iso section, names a bad
// answers format, and bake is refused where there is no first boot.
func TestResolveISOAndBake(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "d.iso"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "p.cfg"), []byte("d-i a/b string c\n"), 0o644)
	sum := strings.Repeat("0", 64)
	for _, tc := range []struct{ yaml, want string }{
		{"kind: iso\n", "iso: missing: kind iso needs iso.path or iso.url"},
		{"kind: iso\niso: {path: d.iso, sha256: " + sum + ", answers: {format: kickstart, file: p.cfg}}\n", "iso.answers.format: kickstart answer files are not supported yet"},
		{"kind: iso\niso: {path: d.iso, sha256: " + sum + ", answers: {format: presed, file: p.cfg}}\n", `did you mean "preseed"?`},
		{"kind: iso\niso: {path: d.iso, sha256: " + sum + ", kernel: /linux, answers: {file: p.cfg}}\n", "iso.kernel: give both iso.kernel and iso.initrd"},
		{"kind: iso\niso: {path: d.iso, sha256: " + sum + ", answers: {file: missing.cfg}}\n", "iso.answers.file: missing base file"},
		{"kind: debootstrap\niso: {path: d.iso, sha256: " + sum + ", answers: {file: p.cfg}}\n", "iso: only used by kind iso"},
		{"kind: debootstrap\nbake: true\n", "bake: only kinds iso and disk with disk.cloudInit"},
	} {
		path := filepath.Join(dir, "image.yaml")
		os.WriteFile(path, []byte("slug: x\n"+tc.yaml), 0o644)
		r, err := LoadRecipe(path)
		if err == nil {
			err = r.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v; want %q", tc.yaml, err, tc.want)
		}
	}
	path := filepath.Join(dir, "image.yaml")
	os.WriteFile(path, []byte("slug: x\nkind: iso\niso: {path: d.iso, sha256: "+sum+", answers: {file: p.cfg}}\n"), 0o644)
	r, err := LoadRecipe(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.Resolve(); err != nil {
		t.Fatal(err)
	}
	if !r.baked() || r.ISO.Answers.Format != AnswersPreseed || r.ISO.DiskSizeMiB != 4096 || r.Readiness.SerialRegex == "" || r.ISO.Path != filepath.Join(dir, "d.iso") {
		t.Errorf("iso defaults: %+v, baked %v, readiness %q", r.ISO, r.baked(), r.Readiness.SerialRegex)
	}
	if err := r.Resolve(); err != nil {
		t.Errorf("a second Resolve: %v", err)
	}
}
