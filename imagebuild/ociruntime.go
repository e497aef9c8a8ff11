package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/sync/errgroup"
)

// The QEMU runtime layer is composed from the exact Debian packages apt
// resolves on the build host (their candidate versions), not from the
// host's installed files: the packages are downloaded (cached by name,
// version and sha256), extracted, and only what QEMU needs at run time is
// taken — the binaries, the ELF closure of the shared libraries they link,
// the x86 firmware and option ROMs, the CA certificates. A minimal
// debootstrap would bring a shell, apt, perl and dpkg's database (about ten
// times the size) and take a minute to make; see docs/oci.md.

// RuntimeRoots are the Debian packages the runtime layer starts from;
// their Depends and Pre-Depends are followed into library and QEMU data
// packages.
var RuntimeRoots = []string{"qemu-system-x86", "qemu-utils", "ca-certificates"}

// runtimeSelection lists what the layer takes from the packages. It is
// part of the layer's cache key.
type runtimeSelection struct {
	// ELF are executables and modules whose library closure is taken.
	ELF []string
	// Trees are path prefixes taken whole (firmware, option ROMs).
	Trees []string
	// Files are single files (x86 boot ROMs of qemu-system-data).
	Files []string
	// LibDirs is the dynamic linker's search path.
	LibDirs []string
}

func defaultRuntimeSelection() runtimeSelection {
	qemuData := []string{"kvmvapic.bin", "linuxboot.bin", "linuxboot_dma.bin", "multiboot.bin",
		"multiboot_dma.bin", "pvh.bin", "qboot.rom", "bios-microvm.bin", "sgabios.bin"}
	for i, f := range qemuData {
		qemuData[i] = "/usr/share/qemu/" + f
	}
	return runtimeSelection{
		ELF: []string{"/usr/bin/qemu-system-x86_64", "/usr/bin/qemu-img",
			// Debian builds TCG's x86 ops as a module QEMU loads at start.
			"/usr/lib/x86_64-linux-gnu/qemu/accel-tcg-x86_64.so"},
		// The EFI option ROMs of the emulated NICs; the legacy pxe-*.rom
		// only serve pre-2.0 machine types.
		Trees:   []string{"/usr/share/seabios/", "/usr/lib/ipxe/qemu/efi-"},
		Files:   qemuData,
		LibDirs: []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/lib64", "/lib", "/usr/lib"},
	}
}

// followDep says whether the runtime closure follows a dependency: only
// libraries and QEMU's own data packages can hold what QEMU loads
// (adduser, debconf or perl cannot).
func followDep(name string) bool {
	return strings.HasPrefix(name, "lib") || strings.HasPrefix(name, "zlib") || strings.HasPrefix(name, "qemu-") ||
		name == "seabios" || name == "ipxe-qemu" || name == "ca-certificates"
}

// resolveRuntime returns the packages of the runtime closure at their
// candidate versions, memoised by the state of the apt lists. Two apt-cache
// calls: the recursive dependency graph, then the chosen packages' stanzas.
func (b *Builder) resolveRuntime(ctx context.Context, roots []string, memoDir string) ([]debPackage, error) {
	memo := filepath.Join(memoDir, "runtime-resolved.json")
	var m struct {
		Stamp string       `json:"stamp"`
		Roots []string     `json:"roots"`
		Pkgs  []debPackage `json:"pkgs"`
	}
	stamp := ociFormat + " " + aptListsStamp()
	if raw, err := os.ReadFile(memo); err == nil && json.Unmarshal(raw, &m) == nil && m.Stamp == stamp && slices.Equal(m.Roots, roots) {
		return m.Pkgs, nil
	}
	args := append([]string{"depends", "--recurse", "--no-recommends", "--no-suggests", "--no-conflicts",
		"--no-breaks", "--no-replaces", "--no-enhances"}, roots...)
	cmd := exec.CommandContext(ctx, "apt-cache", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("imagebuild: runtime layer: apt-cache depends %s: %v: %s (run `apt-get update`)", strings.Join(roots, " "), err, strings.TrimSpace(stderr.String()))
	}
	graph := parseAptDepends(out)
	seen := map[string]bool{}
	var names []string
	queue := append([]string(nil), roots...)
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		if seen[n] {
			continue
		}
		seen[n] = true
		if _, ok := graph[n]; !ok {
			continue // virtual: nothing to download
		}
		names = append(names, n)
		for _, alts := range graph[n] {
			// apt takes the first alternative it can; so do we.
			if followDep(alts[0]) {
				queue = append(queue, alts[0])
			}
		}
	}
	found, err := aptShowMany(ctx, names)
	if err != nil {
		return nil, err
	}
	var pkgs []debPackage
	for _, n := range names {
		st, ok := found[n]
		if !ok {
			return nil, fmt.Errorf("imagebuild: runtime layer: apt-cache show has no candidate for %s (run `apt-get update`)", n)
		}
		pkgs = append(pkgs, st)
	}
	sort.Slice(pkgs, func(i, j int) bool { return pkgs[i].Name < pkgs[j].Name })
	m.Stamp, m.Roots, m.Pkgs = stamp, roots, pkgs
	if raw, err := json.Marshal(m); err == nil {
		writeFileAtomic(memo, raw, 0o644)
	}
	return pkgs, nil
}

// parseAptDepends reads `apt-cache depends --recurse` output: each package
// line is followed by its "Depends:"/"PreDepends:" lines, an alternative
// marked "|" joining the next line. Virtual packages ("<name>") have no
// entry.
func parseAptDepends(out []byte) map[string][][]string {
	g := map[string][][]string{}
	var cur string
	var pending []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, " ") {
			cur = strings.TrimSpace(line)
			if strings.HasPrefix(cur, "<") {
				cur = ""
			} else if _, ok := g[cur]; !ok {
				g[cur] = nil
			}
			pending = nil
			continue
		}
		t := strings.TrimSpace(line)
		alt := strings.HasPrefix(t, "|")
		t = strings.TrimPrefix(t, "|")
		k, v, ok := strings.Cut(t, ": ")
		if !ok || cur == "" || (k != "Depends" && k != "PreDepends") {
			continue
		}
		pending = append(pending, strings.Trim(v, "<>"))
		if !alt {
			g[cur] = append(g[cur], pending)
			pending = nil
		}
	}
	return g
}

// aptShowMany reads the candidate stanzas of names, keyed by name.
func aptShowMany(ctx context.Context, names []string) (map[string]debPackage, error) {
	cmd := exec.CommandContext(ctx, "apt-cache", append([]string{"show", "--no-all-versions"}, names...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil && len(out) == 0 {
		return nil, fmt.Errorf("imagebuild: apt-cache show %s: %v: %s (run `apt-get update`)", strings.Join(names, " "), err, strings.TrimSpace(stderr.String()))
	}
	res := map[string]debPackage{}
	var cur debPackage
	flush := func() {
		if cur.Name != "" {
			res[cur.Name] = cur
		}
		cur = debPackage{}
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		if !ok {
			continue
		}
		switch k {
		case "Package":
			cur.Name = v
		case "Version":
			cur.Version = v
		case "Filename":
			cur.Filename = v
		case "SHA256":
			cur.SHA256 = v
		}
	}
	flush()
	return res, nil
}

// runtimeKey is the cache key of the runtime layer: the exact packages,
// the selection, the layer format and the Go version (its gzip).
func runtimeKey(pkgs []debPackage, sel runtimeSelection) string {
	h := sha256.New()
	enc := json.NewEncoder(h)
	enc.Encode([]any{ociFormat, runtime.Version(), sel})
	for _, p := range pkgs {
		fmt.Fprintf(h, "%s %s %s\n", p.Name, p.Version, p.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// downloadDebs fetches the packages missing from dir with one apt-get
// download and checks every sha256.
func (b *Builder) downloadDebs(ctx context.Context, pkgs []debPackage, dir string) (map[string]string, error) {
	paths := map[string]string{}
	var missing []debPackage
	for _, p := range pkgs {
		dst := filepath.Join(dir, debFile(p))
		if sum, err := vmimage.FileSHA256(dst); err == nil && sum == p.SHA256 {
			paths[p.Name] = dst
			continue
		}
		missing = append(missing, p)
	}
	if len(missing) == 0 {
		return paths, nil
	}
	tmp, err := os.MkdirTemp(dir, ".download-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)
	os.Chmod(tmp, 0o755) // apt's _apt user writes here
	args := []string{"download", "-q"}
	for _, p := range missing {
		args = append(args, p.Name+"="+p.Version)
	}
	b.progress.Step(fmt.Sprintf("download %d QEMU runtime packages", len(missing)))
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("imagebuild: runtime layer: apt-get download (from this host's apt sources): %v: %s", err, lastLines(out, 4))
	}
	for _, p := range missing {
		// apt names the file NAME_VERSION_ARCH.deb (ARCH all or amd64).
		got := filepath.Join(tmp, filepath.Base(p.Filename))
		if m, _ := filepath.Glob(filepath.Join(tmp, p.Name+"_*.deb")); len(m) == 1 {
			got = m[0]
		}
		sum, err := vmimage.FileSHA256(got)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: runtime layer: package %s: %w", p.Name, err)
		}
		if sum != p.SHA256 {
			return nil, fmt.Errorf("imagebuild: runtime layer: package %s %s: %w: got %s, apt lists say %s", p.Name, p.Version, ErrChecksum, sum, p.SHA256)
		}
		dst := filepath.Join(dir, debFile(p))
		if err := os.Rename(got, dst); err != nil {
			return nil, err
		}
		paths[p.Name] = dst
	}
	return paths, nil
}

// debFile is the cache's name of a package: the mirror's file name.
func debFile(p debPackage) string { return filepath.Base(p.Filename) }

// extractDebs extracts the packages (paths by name) into dir, a few at a
// time, and returns their trees by name.
func extractDebs(ctx context.Context, pkgs []debPackage, paths map[string]string, dir string) (map[string]string, error) {
	roots := make(map[string]string, len(pkgs))
	var mu sync.Mutex
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(4)
	for _, p := range pkgs {
		g.Go(func() error {
			root, err := extractDeb(ctx, paths[p.Name], p.SHA256, dir)
			mu.Lock()
			roots[p.Name] = root
			mu.Unlock()
			return err
		})
	}
	return roots, g.Wait()
}

// extractDeb unpacks a .deb once into dir/<sha256[:24]> and returns it.
func extractDeb(ctx context.Context, deb, sha, dir string) (string, error) {
	final := filepath.Join(dir, sha[:24])
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return final, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, final+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, ".complete")); err == nil {
		return final, nil
	}
	tmp, err := os.MkdirTemp(dir, ".work-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return "", fmt.Errorf("imagebuild: dpkg-deb -x %s: %v: %s", deb, err, lastLines(out, 3))
	}
	if err := os.WriteFile(filepath.Join(tmp, ".complete"), nil, 0o644); err != nil {
		return "", err
	}
	os.Chmod(tmp, 0o755)
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return "", err
	}
	return final, nil
}

// pkgTree is the union of extracted packages: absolute path in the layer
// to the file on disk and the package that ships it.
type pkgTree struct {
	files map[string]treeFile
}

type treeFile struct {
	src string // file on disk
	pkg string
}

func newPkgTree(roots map[string]string) (*pkgTree, error) {
	t := &pkgTree{files: map[string]treeFile{}}
	names := make([]string, 0, len(roots))
	for n := range roots {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		root := roots[n]
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(root, p)
			if rel == "." || rel == ".complete" {
				return nil
			}
			abs := "/" + filepath.ToSlash(rel)
			if _, dup := t.files[abs]; !dup {
				t.files[abs] = treeFile{src: p, pkg: n}
			}
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return t, nil
}

// resolve follows symlinks inside the tree; it returns every path passed
// through (links and the final file), or ok=false when the path is not
// shipped by any package.
func (t *pkgTree) resolve(p string) (chain []string, ok bool) {
	for range 16 {
		f, found := t.files[p]
		if !found {
			return chain, false
		}
		chain = append(chain, p)
		st, err := os.Lstat(f.src)
		if err != nil || st.Mode()&fs.ModeSymlink == 0 {
			return chain, err == nil
		}
		target, err := os.Readlink(f.src)
		if err != nil {
			return chain, false
		}
		if !path.IsAbs(target) {
			target = path.Join(path.Dir(p), target)
		}
		p = path.Clean(target)
	}
	return chain, false
}

// ErrRuntimeIncomplete: the packages of the QEMU runtime layer lack a
// file QEMU needs (a library it links, a ROM it loads).
var ErrRuntimeIncomplete = errors.New("QEMU runtime layer incomplete")

// selectRuntime picks the layer's files from the tree: the ELF objects and
// their library closure, the firmware trees and files, and the copyright
// file of every package used. It fails, naming what is missing and who
// needs it, when a library or file cannot be found.
func (t *pkgTree) selectRuntime(sel runtimeSelection) (map[string]string, error) {
	out := map[string]string{}
	used := map[string]bool{}
	take := func(chain []string) {
		for _, p := range chain {
			out[p] = t.files[p].src
			used[t.files[p].pkg] = true
		}
	}
	queue := append([]string(nil), sel.ELF...)
	done := map[string]bool{}
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		if done[p] {
			continue
		}
		done[p] = true
		chain, ok := t.resolve(p)
		if !ok {
			return nil, fmt.Errorf("%w: %s is in none of the packages", ErrRuntimeIncomplete, p)
		}
		take(chain)
		real := t.files[chain[len(chain)-1]].src
		f, err := elf.Open(real)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrRuntimeIncomplete, p, err)
		}
		needed, err := f.ImportedLibraries()
		var interp string
		for _, prog := range f.Progs {
			if prog.Type == elf.PT_INTERP {
				buf := make([]byte, prog.Filesz)
				prog.ReadAt(buf, 0)
				interp = strings.TrimRight(string(buf), "\x00")
			}
		}
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrRuntimeIncomplete, p, err)
		}
		if interp != "" {
			queue = append(queue, interp)
		}
		for _, lib := range needed {
			found := ""
			for _, d := range sel.LibDirs {
				if _, ok := t.resolve(d + "/" + lib); ok {
					found = d + "/" + lib
					break
				}
			}
			if found == "" {
				return nil, fmt.Errorf("%w: %s, which %s links, is in none of the packages (%s)", ErrRuntimeIncomplete, lib, p, strings.Join(sel.LibDirs, ", "))
			}
			queue = append(queue, found)
		}
	}
	for _, tree := range sel.Trees {
		n := 0
		for p := range t.files {
			if strings.HasPrefix(p, tree) {
				if st, err := os.Lstat(t.files[p].src); err == nil && !st.IsDir() {
					take([]string{p})
					n++
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("%w: %s is in none of the packages", ErrRuntimeIncomplete, tree)
		}
	}
	for _, p := range sel.Files {
		chain, ok := t.resolve(p)
		if !ok {
			return nil, fmt.Errorf("%w: %s is in none of the packages", ErrRuntimeIncomplete, p)
		}
		take(chain)
	}
	for pkg := range used {
		if c := "/usr/share/doc/" + pkg + "/copyright"; t.files[c].src != "" {
			out[c] = t.files[c].src
		}
	}
	return out, nil
}

// caBundle concatenates the Mozilla CA certificates of ca-certificates in
// name order, as update-ca-certificates writes
// /etc/ssl/certs/ca-certificates.crt.
func (t *pkgTree) caBundle() ([]byte, error) {
	var names []string
	for p := range t.files {
		if strings.HasPrefix(p, "/usr/share/ca-certificates/") && strings.HasSuffix(p, ".crt") {
			names = append(names, p)
		}
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("%w: no CA certificates in /usr/share/ca-certificates", ErrRuntimeIncomplete)
	}
	sort.Strings(names)
	var b bytes.Buffer
	for _, n := range names {
		raw, err := os.ReadFile(t.files[n].src)
		if err != nil {
			return nil, err
		}
		b.Write(raw)
		if !bytes.HasSuffix(raw, []byte("\n")) {
			b.WriteByte('\n')
		}
	}
	return b.Bytes(), nil
}
