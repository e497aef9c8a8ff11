package kubetest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"time"
)

// Versions built from the Go module proxy.
const (
	// KubernetesVersion is the release of kube-apiserver and kubelet.
	KubernetesVersion = "v1.34.3"
	// MultusVersion is the release of the Multus thin plugin.
	MultusVersion = "v4.2.2"

	kubernetesModule = "k8s.io/kubernetes"
	multusModule     = "gopkg.in/k8snetworkplumbingwg/multus-cni.v4"
)

// kubernetesCommands are the Kubernetes programs Build builds: only what a
// control plane plus one node need. The controller-manager runs the
// namespace controller (without it a deleted namespace never goes away);
// the scheduler places pods by their affinity, as on any cluster (it adds
// 6 packages to the build, the others being shared).
var kubernetesCommands = []string{"kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet"}

// buildOutputs are the files of one build: the Kubernetes programs, the
// Multus thin plugin and its CRD.
var buildOutputs = append(slices.Clone(kubernetesCommands), "multus", crdFile)

// buildEnv makes static binaries with Go's own linker: no cgo step for the
// net and os/user packages, and the internal link is the faster one.
const buildEnv = "CGO_ENABLED=0"

// kubernetesLDFlags stamp the release into the programs (a build from the
// module proxy has no git tree to take it from: `kubectl version` and the
// node status would say v0.0.0-master) and strip the symbol tables.
func kubernetesLDFlags(version string) string {
	major, minor, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	minor, _, _ = strings.Cut(minor, ".")
	const pkg = "k8s.io/component-base/version"
	return fmt.Sprintf("-ldflags=-s -w -X %s.gitVersion=%s -X %s.gitMajor=%s -X %s.gitMinor=%s -X %s.gitTreeState=clean",
		pkg, version, pkg, major, pkg, minor, pkg)
}

// Kubernetes is a cached build of the Kubernetes programs.
type Kubernetes struct {
	Version           string
	APIServer         string // path of kube-apiserver
	ControllerManager string // path of kube-controller-manager
	Scheduler         string // path of kube-scheduler
	Kubelet           string // path of kubelet
}

// Multus is a cached build of the Multus thin plugin.
type Multus struct {
	Version string
	Plugin  string // path of the multus CNI plugin
	// CRD is the NetworkAttachmentDefinition CustomResourceDefinition
	// (YAML) from the same release.
	CRD string
}

// Build returns kube-apiserver, kube-controller-manager, kube-scheduler and
// kubelet of KubernetesVersion and the Multus thin plugin of MultusVersion
// with its CRD, building them into cacheDir on first use. One module, one
// `go build` invocation for the five programs: the 2,400-odd packages they
// share (client-go, apimachinery, the API types, …) compile once. See
// docs/performance.md for the cold build's time. Concurrent callers share
// one build.
func Build(ctx context.Context, cacheDir string, log *slog.Logger) (*Kubernetes, *Multus, error) {
	dir, err := cached(ctx, cacheDir, recipe{name: "kubernetes", version: KubernetesVersion + "+multus-" + MultusVersion,
		outputs: buildOutputs, flags: []string{buildEnv, "-trimpath", kubernetesLDFlags(KubernetesVersion)}, build: buildAll}, log)
	if err != nil {
		return nil, nil, err
	}
	k := &Kubernetes{Version: KubernetesVersion, APIServer: filepath.Join(dir, "kube-apiserver"),
		ControllerManager: filepath.Join(dir, "kube-controller-manager"), Scheduler: filepath.Join(dir, "kube-scheduler"),
		Kubelet: filepath.Join(dir, "kubelet")}
	m := &Multus{Version: MultusVersion, Plugin: filepath.Join(dir, "multus"), CRD: filepath.Join(dir, crdFile)}
	return k, m, nil
}

const crdFile = "network-attachment-definition-crd.yaml"

// recipe is one cached build: build makes outputs of version into out,
// with go build flags, using work as the throw-away module.
type recipe struct {
	name, version string
	outputs       []string
	flags         []string
	build         func(ctx context.Context, work, out, version string, flags []string, log *slog.Logger) error
}

// cached returns cacheDir/<name>/<version>-<key> holding the recipe's
// outputs, building them first when any is missing. An exclusive lock on
// <name>/.lock makes a second process wait for the first build instead of
// repeating it.
func cached(ctx context.Context, cacheDir string, r recipe, log *slog.Logger) (string, error) {
	name, version, outputs := r.name, r.version, r.outputs
	root := filepath.Join(cacheDir, name)
	if err := os.MkdirAll(root, 0o755); err != nil {
		return "", err
	}
	dir := filepath.Join(root, version+"-"+r.key())
	if complete(dir, outputs) {
		return dir, nil
	}
	unlock, err := lockFile(ctx, filepath.Join(root, ".lock"))
	if err != nil {
		return "", err
	}
	defer unlock()
	if complete(dir, outputs) { // another process built it while we waited
		return dir, nil
	}
	// Holding the lock, any build directory is a killed build's leftover.
	if old, err := filepath.Glob(filepath.Join(root, ".build-*")); err == nil {
		for _, d := range old {
			os.RemoveAll(d)
		}
	}
	work, err := os.MkdirTemp(root, ".build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(work)
	out := filepath.Join(work, "out")
	if err := os.Mkdir(out, 0o755); err != nil {
		return "", err
	}
	start := time.Now()
	log.Info("kubetest: building (cached afterwards)", "what", name, "version", version, "cache", dir)
	stop := heartbeat(log, name, start)
	err = r.build(ctx, work, out, version, r.flags, log)
	stop()
	if err != nil {
		return "", fmt.Errorf("kubetest: build %s %s: %w", name, version, err)
	}
	if !complete(out, outputs) {
		return "", fmt.Errorf("kubetest: build %s %s: outputs missing in %s", name, version, out)
	}
	os.RemoveAll(dir) // a partial directory from an interrupted rename
	if err := os.Rename(out, dir); err != nil {
		return "", err
	}
	log.Info("kubetest: built", "what", name, "version", version, "took", time.Since(start).Round(time.Second))
	return dir, nil
}

// key changes whenever what a build produces would: the version, the
// outputs, the flags and the platform.
func (r recipe) key() string {
	h := sha256.New()
	fmt.Fprintln(h, r.name, r.version, runtime.GOOS, runtime.GOARCH, strings.Join(r.outputs, ","), strings.Join(r.flags, " "))
	return hex.EncodeToString(h.Sum(nil))[:12]
}

func complete(dir string, outputs []string) bool {
	for _, o := range outputs {
		if st, err := os.Stat(filepath.Join(dir, o)); err != nil || st.Size() == 0 {
			return false
		}
	}
	return true
}

// lockFile takes an exclusive flock on path, giving up when ctx ends.
func lockFile(ctx context.Context, path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { syscall.Flock(int(f.Fd()), syscall.LOCK_UN); f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("kubetest: lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("kubetest: waiting for another build (lock %s): %w", path, ctx.Err())
		case <-time.After(time.Second):
		}
	}
}

// heartbeat logs every 30 s while a long build runs, so a terminal or a CI
// log shows it is alive.
func heartbeat(log *slog.Logger, what string, start time.Time) func() {
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(30 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				log.Info("kubetest: still building", "what", what, "elapsed", time.Since(start).Round(time.Second))
			}
		}
	}()
	return func() { close(done) }
}

// stagingVersion maps a Kubernetes release to its staging modules' release:
// v1.34.3 → v0.34.3.
func stagingVersion(v string) string { return "v0" + strings.TrimPrefix(v, "v1") }

// buildAll writes a throw-away module requiring k8s.io/kubernetes and
// Multus, whose replace block points every Kubernetes staging module
// (k8s.io/kubernetes replaces them with ./staging/src/... in its own go.mod,
// which a dependency's replace cannot do) at its published release, and
// Multus at a patched copy (patchMultus); then builds the five programs in
// one go build and extracts the Multus CRD.
func buildAll(ctx context.Context, work, out, _ string, flags []string, log *slog.Logger) error {
	if err := writeGoMod(work, "ekkubebuild", "1.24.0", ""); err != nil {
		return err
	}
	kinfo, err := modDownload(ctx, work, kubernetesModule+"@"+KubernetesVersion)
	if err != nil {
		return err
	}
	gomod, err := os.ReadFile(kinfo.GoMod)
	if err != nil {
		return err
	}
	staging := stagingModules(gomod)
	if len(staging) == 0 {
		return fmt.Errorf("%s: no ./staging replacements in %s", kubernetesModule, kinfo.GoMod)
	}
	minfo, err := modDownload(ctx, work, multusModule+"@"+MultusVersion)
	if err != nil {
		return err
	}
	if err := extractCRD(minfo.Dir, out); err != nil {
		return err
	}
	if err := patchMultus(minfo.Dir, filepath.Join(work, "multus")); err != nil {
		return err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "require (\n\t%s %s\n\t%s %s\n)\n\nreplace (\n", kubernetesModule, KubernetesVersion, multusModule, MultusVersion)
	for _, m := range staging {
		fmt.Fprintf(&b, "\t%s => %s %s\n", m, m, stagingVersion(KubernetesVersion))
	}
	fmt.Fprintf(&b, "\t%s => ./multus\n)\n", multusModule)
	if err := writeGoMod(work, "ekkubebuild", goDirective(gomod), b.String()); err != nil {
		return err
	}
	var pkgs []string
	for _, c := range kubernetesCommands {
		pkgs = append(pkgs, kubernetesModule+"/cmd/"+c)
	}
	pkgs = append(pkgs, multusModule+"/cmd/multus")
	return goBuild(ctx, work, out, flags, pkgs, log)
}

// extractCRD writes the NetworkAttachmentDefinition CRD of the Multus
// module in modDir to out.
func extractCRD(modDir, out string) error {
	manifest := filepath.Join(modDir, "deployments", "multus-daemonset.yml")
	raw, err := os.ReadFile(manifest)
	if err != nil {
		return err
	}
	crd, err := documentOfKind(raw, "CustomResourceDefinition")
	if err != nil {
		return fmt.Errorf("%s: %w", manifest, err)
	}
	return os.WriteFile(filepath.Join(out, crdFile), crd, 0o644)
}

// multusPatches adapt Multus (built against k8s.io/kubelet v0.32) to the
// v0.34 staging modules it shares with Kubernetes in the one build: the
// pod-resources API renamed a field. Each must apply, so a version change
// that no longer needs one is noticed.
var multusPatches = []struct{ file, old, new string }{
	{"pkg/kubeletclient/kubeletclient.go", "claimResource.CDIDevices", "claimResource.CdiDevices"},
}

// patchMultus copies the Multus module from the module cache to dst and
// applies multusPatches.
func patchMultus(modDir, dst string) error {
	err := filepath.WalkDir(modDir, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(modDir, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		raw, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, raw, 0o644)
	})
	if err != nil {
		return fmt.Errorf("copy %s: %w", modDir, err)
	}
	for _, pt := range multusPatches {
		f := filepath.Join(dst, pt.file)
		raw, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		if !bytes.Contains(raw, []byte(pt.old)) {
			return fmt.Errorf("patch %s: %q not found (Multus %s changed: revisit multusPatches)", pt.file, pt.old, MultusVersion)
		}
		if err := os.WriteFile(f, bytes.ReplaceAll(raw, []byte(pt.old), []byte(pt.new)), 0o644); err != nil {
			return err
		}
	}
	return nil
}

func writeGoMod(dir, module, goVersion, rest string) error {
	s := fmt.Sprintf("module %s\n\ngo %s\n\n%s", module, goVersion, rest)
	return os.WriteFile(filepath.Join(dir, "go.mod"), []byte(s), 0o644)
}

var (
	envRE     = regexp.MustCompile(`^[A-Z][A-Z0-9_]*=`)
	stagingRE = regexp.MustCompile(`(?m)^\s*(k8s\.io/[a-z0-9-]+)\s*=>\s*\./staging/`)
	goLineRE  = regexp.MustCompile(`(?m)^go\s+(\S+)`)
)

// stagingModules lists the modules a go.mod replaces with ./staging paths.
func stagingModules(gomod []byte) []string {
	var mods []string
	for _, m := range stagingRE.FindAllSubmatch(gomod, -1) {
		mods = append(mods, string(m[1]))
	}
	return mods
}

func goDirective(gomod []byte) string {
	if m := goLineRE.FindSubmatch(gomod); m != nil {
		return string(m[1])
	}
	return "1.24.0"
}

// documentOfKind returns the first document of a multi-document YAML
// stream whose top-level kind is kind.
func documentOfKind(stream []byte, kind string) ([]byte, error) {
	for _, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(string(stream), -1) {
		sc := bufio.NewScanner(strings.NewReader(doc))
		for sc.Scan() {
			if strings.TrimSpace(sc.Text()) == "kind: "+kind && !strings.HasPrefix(sc.Text(), " ") {
				return []byte(strings.TrimSpace(doc) + "\n"), nil
			}
		}
	}
	return nil, fmt.Errorf("no %s document", kind)
}

type modInfo struct {
	Dir, GoMod, Error string
}

// modDownload fetches a module through the proxy and says where it is.
func modDownload(ctx context.Context, work, modVersion string) (*modInfo, error) {
	raw, err := goCmd(ctx, work, "mod", "download", "-json", modVersion).Output()
	var info modInfo
	if jerr := json.Unmarshal(raw, &info); jerr == nil && info.Error != "" {
		return nil, fmt.Errorf("go mod download %s: %s", modVersion, info.Error)
	}
	if err != nil {
		return nil, fmt.Errorf("go mod download %s: %w", modVersion, exitDetail(err))
	}
	if info.GoMod == "" || info.Dir == "" {
		return nil, fmt.Errorf("go mod download %s: no module directory in %q", modVersion, raw)
	}
	return &info, nil
}

// goBuild builds pkgs into out at low priority, in one go build; -mod=mod
// lets the go command complete go.mod and go.sum of the throw-away module.
// Flags of the form NAME=VALUE are set in the environment instead.
func goBuild(ctx context.Context, work, out string, flags, pkgs []string, log *slog.Logger) error {
	args := []string{"build", "-mod=mod", "-o", out + "/"}
	var env []string
	for _, f := range flags {
		if envRE.MatchString(f) {
			env = append(env, f)
		} else {
			args = append(args, f)
		}
	}
	cmd := goCmd(ctx, work, append(args, pkgs...)...)
	cmd.Env = append(cmd.Env, env...)
	cmd.Args = append([]string{"nice", "-n", "10"}, cmd.Args...)
	cmd.Path = niceBin()
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	log.Debug("kubetest: go build", "args", cmd.Args)
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w\n%s", strings.Join(pkgs, " "), err, tailString(buf.String(), 4000))
	}
	return nil
}

func niceBin() string {
	if p, err := exec.LookPath("nice"); err == nil {
		return p
	}
	return "/usr/bin/nice"
}

// goCmd runs the go command in a throw-away module, isolated from any
// workspace and from the caller's GOFLAGS.
func goCmd(ctx context.Context, dir string, args ...string) *exec.Cmd {
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = "/usr/local/go/bin/go"
	}
	cmd := exec.CommandContext(ctx, goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-buildvcs=false", "GO111MODULE=on")
	cmd.WaitDelay = 5 * time.Second
	return cmd
}

func exitDetail(err error) error {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return fmt.Errorf("%w: %s", err, tailString(string(ee.Stderr), 2000))
	}
	return err
}

func tailString(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "…" + s[len(s)-n:]
}
