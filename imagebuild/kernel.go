package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/endpointkit/endpointkit/vmimage"
)

// debPackage is a Debian package resolved against the host's apt lists.
type debPackage struct {
	Name     string `json:"name"`
	Version  string `json:"version"`
	Filename string `json:"filename"` // pool path on the mirror
	SHA256   string `json:"sha256"`
}

// FileName is the name apt-get download gives the .deb.
func (p debPackage) FileName() string {
	return p.Name + "_" + strings.ReplaceAll(p.Version, ":", "%3a") + "_amd64.deb"
}

var concreteKernel = regexp.MustCompile(`^linux-image-[0-9]`)

// aptListsStamp identifies the state of the host's apt lists, so package
// resolutions can be memoised until `apt-get update` changes them.
func aptListsStamp() string {
	h := sha256.New()
	ents, _ := os.ReadDir("/var/lib/apt/lists")
	for _, e := range ents {
		if fi, err := e.Info(); err == nil && fi.Mode().IsRegular() {
			fmt.Fprintf(h, "%s %d %d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}

// resolveKernel turns a kernel package name (a metapackage such as
// linux-image-amd64, or a concrete linux-image-6.1.0-N-amd64) into the
// concrete package apt would download, memoised in dir.
func (b *Builder) resolveKernel(ctx context.Context, name, dir string) (debPackage, error) {
	memo := filepath.Join(dir, "resolved.json")
	var m struct {
		Stamp string                `json:"stamp"`
		Pkgs  map[string]debPackage `json:"pkgs"`
	}
	stamp := aptListsStamp()
	if raw, err := os.ReadFile(memo); err == nil && json.Unmarshal(raw, &m) == nil && m.Stamp == stamp {
		if p, ok := m.Pkgs[name]; ok {
			return p, nil
		}
	} else {
		m.Stamp, m.Pkgs = stamp, map[string]debPackage{}
	}
	cur := name
	for range 3 {
		p, deps, err := aptShow(ctx, cur)
		if err != nil {
			return debPackage{}, err
		}
		if concreteKernel.MatchString(p.Name) {
			m.Pkgs[name] = p
			if raw, err := json.Marshal(m); err == nil {
				writeFileAtomic(memo, raw, 0o644)
			}
			return p, nil
		}
		next := ""
		for _, d := range deps {
			if concreteKernel.MatchString(d) {
				next = d
				break
			}
		}
		if next == "" {
			return debPackage{}, fmt.Errorf("imagebuild: package %s is not a kernel image and depends on none (want linux-image-amd64 or linux-image-<version>-amd64)", cur)
		}
		cur = next
	}
	return debPackage{}, fmt.Errorf("imagebuild: package %s: kernel metapackage chain too long", name)
}

// aptShow reads the candidate version of a package from apt's cache.
func aptShow(ctx context.Context, name string) (debPackage, []string, error) {
	out, err := exec.CommandContext(ctx, "apt-cache", "show", "--no-all-versions", name).Output()
	if err != nil {
		msg := ""
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return debPackage{}, nil, fmt.Errorf("imagebuild: apt-cache show %s: %v %s (is the package name right? run `apt-get update`)", name, err, msg)
	}
	var p debPackage
	var deps []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			p.Name = v
		case "Version":
			p.Version = v
		case "Filename":
			p.Filename = v
		case "SHA256":
			p.SHA256 = v
		case "Depends":
			for _, d := range strings.Split(v, ",") {
				deps = append(deps, strings.Fields(strings.TrimSpace(d))[0])
			}
		}
	}
	if p.Name == "" || p.Version == "" {
		return p, nil, fmt.Errorf("imagebuild: apt-cache knows no package %s (run `apt-get update`)", name)
	}
	return p, deps, nil
}

// downloadDeb fetches p into dir with apt-get download (unless a file with
// the right sha256 is there) and returns its path.
func (b *Builder) downloadDeb(ctx context.Context, p debPackage, dir string) (string, error) {
	dst := filepath.Join(dir, p.FileName())
	if sum, err := vmimage.FileSHA256(dst); err == nil && (p.SHA256 == "" || sum == p.SHA256) {
		return dst, nil
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755) // apt's _apt user writes here
	b.progress.Step(fmt.Sprintf("download %s %s", p.Name, p.Version))
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", p.Name+"="+p.Version)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("imagebuild: download package %s=%s (from the apt sources of this host): %v: %s", p.Name, p.Version, err, lastLines(out, 4))
	}
	got := filepath.Join(tmp, p.FileName())
	sum, err := vmimage.FileSHA256(got)
	if err != nil {
		return "", fmt.Errorf("imagebuild: download package %s: %w", p.Name, err)
	}
	if p.SHA256 != "" && sum != p.SHA256 {
		return "", fmt.Errorf("imagebuild: package %s: %w: got %s, apt lists say %s", p.Name, ErrChecksum, sum, p.SHA256)
	}
	if err := os.Rename(got, dst); err != nil {
		return "", err
	}
	return dst, nil
}

// kernel is an extracted Debian kernel package.
type kernel struct {
	Dir     string // holds vmlinux and lib/modules/<Version>
	Version string // uname -r
}

func (k *kernel) vmlinux() string              { return filepath.Join(k.Dir, "vmlinux") }
func (k *kernel) moduleDir() string            { return filepath.Join(k.Dir, "lib", "modules", k.Version) }
func (k *kernel) modulePath(rel string) string { return filepath.Join(k.moduleDir(), rel) }

// prepareKernel extracts the kernel package once into dir/<sha>: the
// uncompressed vmlinux for PVH boot and the module tree with modules.dep.
func (b *Builder) prepareKernel(ctx context.Context, deb, sha, dir string) (*kernel, error) {
	final := filepath.Join(dir, sha[:24])
	if raw, err := os.ReadFile(filepath.Join(final, "version")); err == nil {
		return &kernel{Dir: final, Version: strings.TrimSpace(string(raw))}, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return nil, err
	}
	defer unlock()
	if raw, err := os.ReadFile(filepath.Join(final, "version")); err == nil {
		return &kernel{Dir: final, Version: strings.TrimSpace(string(raw))}, nil
	}
	b.progress.Step("extract kernel " + filepath.Base(deb))
	tmp, err := os.MkdirTemp(dir, ".kernel-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imagebuild: dpkg-deb -x %s: %v: %s", deb, err, lastLines(out, 3))
	}
	mods, _ := filepath.Glob(filepath.Join(tmp, "lib", "modules", "*"))
	if len(mods) != 1 {
		return nil, fmt.Errorf("imagebuild: %s: want one lib/modules/<version>, found %d", deb, len(mods))
	}
	version := filepath.Base(mods[0])
	if out, err := exec.CommandContext(ctx, "depmod", "-b", tmp, version).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imagebuild: depmod -b %s %s: %v: %s (install kmod)", tmp, version, err, lastLines(out, 3))
	}
	vmlinuz := filepath.Join(tmp, "boot", "vmlinuz-"+version)
	if err := extractVmlinux(ctx, vmlinuz, filepath.Join(tmp, "vmlinux")); err != nil {
		return nil, err
	}
	os.RemoveAll(filepath.Join(tmp, "usr"))
	if err := os.WriteFile(filepath.Join(tmp, "version"), []byte(version+"\n"), 0o644); err != nil {
		return nil, err
	}
	os.Chmod(tmp, 0o755)
	if err := os.Rename(tmp, final); err != nil {
		return nil, err
	}
	return &kernel{Dir: final, Version: version}, nil
}

// extractVmlinux writes the uncompressed ELF kernel inside a bzImage: the
// setup header gives the payload's offset and length; Debian compresses it
// with xz and the x86 BCJ filter, which /usr/bin/xz decodes.
func extractVmlinux(ctx context.Context, bzImage, dst string) error {
	raw, err := os.ReadFile(bzImage)
	if err != nil {
		return fmt.Errorf("imagebuild: kernel: %w", err)
	}
	if len(raw) < 0x250 || string(raw[0x202:0x206]) != "HdrS" {
		return fmt.Errorf("imagebuild: %s is not a bzImage", bzImage)
	}
	setupSects := int(raw[0x1f1])
	if setupSects == 0 {
		setupSects = 4
	}
	off := (setupSects+1)*512 + int(binary.LittleEndian.Uint32(raw[0x248:]))
	n := int(binary.LittleEndian.Uint32(raw[0x24c:]))
	if off+n > len(raw) || n < 6 {
		return fmt.Errorf("imagebuild: %s: payload out of range", bzImage)
	}
	payload := raw[off : off+n]
	if !bytes.HasPrefix(payload, []byte{0xfd, '7', 'z', 'X', 'Z', 0}) {
		return fmt.Errorf("imagebuild: %s: payload is not xz (magic %x); only xz kernels are supported", bzImage, payload[:6])
	}
	f, err := os.Create(dst)
	if err != nil {
		return err
	}
	cmd := exec.CommandContext(ctx, "xz", "-dc", "--single-stream")
	cmd.Stdin = bytes.NewReader(payload)
	cmd.Stdout = f
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("imagebuild: xz -d kernel payload: %v: %s (install xz-utils)", err, stderr.String())
	}
	ef, err := elf.Open(dst)
	if err != nil {
		return fmt.Errorf("imagebuild: extracted kernel is not ELF: %w", err)
	}
	defer ef.Close()
	for _, p := range ef.Progs {
		if p.Type == elf.PT_NOTE {
			notes := make([]byte, p.Filesz)
			if _, err := p.ReadAt(notes, 0); err == nil && hasPVHNote(notes) {
				return nil
			}
		}
	}
	return fmt.Errorf("imagebuild: %s has no PVH entry note (needs CONFIG_PVH=y)", bzImage)
}

// hasPVHNote looks for the Xen ELF note XEN_ELFNOTE_PHYS32_ENTRY (18).
func hasPVHNote(notes []byte) bool {
	for len(notes) >= 12 {
		nameSz := int(binary.LittleEndian.Uint32(notes[0:]))
		descSz := int(binary.LittleEndian.Uint32(notes[4:]))
		typ := binary.LittleEndian.Uint32(notes[8:])
		name := align4(nameSz)
		if 12+name > len(notes) {
			return false
		}
		if typ == 18 && strings.TrimRight(string(notes[12:12+nameSz]), "\x00") == "Xen" {
			return true
		}
		notes = notes[min(len(notes), 12+name+align4(descSz)):]
	}
	return false
}

func align4(n int) int { return (n + 3) &^ 3 }

// moduleDeps reads modules.dep: each module (path relative to the module
// directory) with the modules it needs.
func (k *kernel) moduleDeps() (map[string][]string, error) {
	raw, err := os.ReadFile(filepath.Join(k.moduleDir(), "modules.dep"))
	if err != nil {
		return nil, fmt.Errorf("imagebuild: kernel %s: %w", k.Version, err)
	}
	deps := map[string][]string{}
	for _, line := range strings.Split(string(raw), "\n") {
		if mod, rest, ok := strings.Cut(line, ":"); ok {
			deps[mod] = strings.Fields(rest)
		}
	}
	return deps, nil
}

// withDeps returns mods and every module they need, each after its
// dependencies (a valid load order).
func withDeps(deps map[string][]string, mods []string) []string {
	var order []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(m string) {
		if seen[m] {
			return
		}
		seen[m] = true
		for _, d := range deps[m] {
			visit(d)
		}
		order = append(order, m)
	}
	for _, m := range mods {
		visit(m)
	}
	return order
}

// resolveModules returns the modules (paths relative to the module dir)
// needed for names, dependencies first. Built-in modules are skipped.
func (k *kernel) resolveModules(names []string) ([]string, error) {
	deps, err := k.moduleDeps()
	if err != nil {
		return nil, err
	}
	norm := func(s string) string {
		return strings.ReplaceAll(strings.TrimSuffix(filepath.Base(s), ".ko"), "-", "_")
	}
	byName := map[string]string{} // module name -> relpath
	for mod := range deps {
		byName[norm(mod)] = mod
	}
	builtin := map[string]bool{}
	if raw, err := os.ReadFile(filepath.Join(k.moduleDir(), "modules.builtin")); err == nil {
		for _, l := range strings.Fields(string(raw)) {
			builtin[norm(l)] = true
		}
	}
	var mods, missing []string
	for _, n := range names {
		rel, ok := byName[norm(n)]
		switch {
		case ok:
			mods = append(mods, rel)
		case builtin[norm(n)]:
		default:
			missing = append(missing, n)
		}
	}
	if len(missing) > 0 {
		sort.Strings(missing)
		return nil, fmt.Errorf("imagebuild: kernel %s has no module %s", k.Version, strings.Join(missing, ", "))
	}
	return withDeps(deps, mods), nil
}

func lastLines(out []byte, n int) string {
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}
