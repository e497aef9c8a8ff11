package imagebuild

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Module and package of the guest agent.
const (
	modulePath = "github.com/endpointkit/endpointkit"
	AgentPkg   = modulePath + "/imagebuild/agent/cmd/ekagent"
)

// agentBinary returns the guest agent binary for r: Options.AgentBinary,
// else the recipe's agent, else one built from source with `go build`
// (CGO_ENABLED=0, linux/amd64, -trimpath) and cached by the hash of the
// agent's sources, go.mod, go.sum and the Go version.
func (b *Builder) agentBinary(ctx context.Context, r *Recipe) (string, error) {
	if b.opts.AgentBinary != "" {
		return b.opts.AgentBinary, nil
	}
	if r.Agent != "" {
		return r.Agent, nil
	}
	if _, err := exec.LookPath("go"); err != nil {
		return "", fmt.Errorf("imagebuild: building the guest agent needs the go command (%w); or set the recipe's agent: / Options.AgentBinary to a pre-built %s", ErrMissingTool, AgentPkg)
	}
	goDir := b.opts.GoDir
	if goDir == "" {
		goDir, _ = os.Getwd()
	}
	srcDir, inModule, err := endpointkitDir(ctx, goDir)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	for _, p := range []string{filepath.Join(srcDir, "imagebuild", "agent"), filepath.Join(srcDir, "go.mod"), filepath.Join(srcDir, "go.sum")} {
		sum, err := treeSHA256(p)
		if err != nil {
			return "", fmt.Errorf("imagebuild: agent sources: %w", err)
		}
		io.WriteString(h, sum)
	}
	gover, err := exec.CommandContext(ctx, "go", "env", "GOVERSION").Output()
	if err != nil {
		return "", fmt.Errorf("imagebuild: go env: %w", err)
	}
	h.Write(gover)
	dir := filepath.Join(b.opts.CacheDir, "agents", hex.EncodeToString(h.Sum(nil))[:24])
	bin := filepath.Join(dir, "ekagent")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	unlock, err := lockFile(ctx, dir+".lock")
	if err != nil {
		return "", err
	}
	defer unlock()
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	b.progress.Step("go build guest agent")
	tmp := bin + ".tmp"
	pkg, wd := AgentPkg, goDir
	if inModule {
		pkg, wd = "./imagebuild/agent/cmd/ekagent", srcDir
	}
	cmd := exec.CommandContext(ctx, "go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, pkg)
	cmd.Dir = wd
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("imagebuild: go build %s in %s: %v: %s", pkg, wd, err, lastLines(out, 6))
	}
	if err := os.Rename(tmp, bin); err != nil {
		return "", err
	}
	return bin, nil
}

// endpointkitDir finds the endpointkit module's source directory from dir:
// the enclosing module when it is endpointkit itself (inModule), else the
// required module's directory as `go list -m` reports it.
func endpointkitDir(ctx context.Context, dir string) (string, bool, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if raw, err := os.ReadFile(filepath.Join(d, "go.mod")); err == nil {
			if moduleLine(raw) == modulePath {
				return d, true, nil
			}
			break
		}
		if filepath.Dir(d) == d {
			break
		}
	}
	cmd := exec.CommandContext(ctx, "go", "list", "-m", "-f", "{{.Dir}}", modulePath)
	cmd.Dir = dir
	out, err := cmd.Output()
	if err != nil || strings.TrimSpace(string(out)) == "" {
		var ee *exec.ExitError
		msg := ""
		if errors.As(err, &ee) {
			msg = strings.TrimSpace(string(ee.Stderr))
		}
		return "", false, fmt.Errorf("imagebuild: cannot build the guest agent from %s: not in a module that requires %s (%s); set Options.GoDir, or Options.AgentBinary / the recipe's agent: to a pre-built agent", dir, modulePath, msg)
	}
	return strings.TrimSpace(string(out)), false, nil
}

func moduleLine(gomod []byte) string {
	sc := bufio.NewScanner(bytes.NewReader(gomod))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) == 2 && f[0] == "module" {
			return strings.Trim(f[1], `"`)
		}
	}
	return ""
}
