package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/registrytest"
	"github.com/endpointkit/endpointkit/vmimage"
)

func run(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := Run(context.Background(), args, strings.NewReader(""), &out, &errb)
	return out.String(), errb.String(), err
}

func TestBuildAndDockerfile(t *testing.T) {
	imagetest.RequireBuildTools(t, "initramfs")
	root := ektest.RepoRoot(t)
	t.Chdir(root) // the agent is built from the working directory's module
	out := filepath.Join(t.TempDir(), "tiny")
	cache := filepath.Join(ektest.CacheDir(t), "imagebuild")
	stdout, stderr, err := run(t, "build", "--cache", cache, "-o", out, filepath.Join(root, "examples", "images", "tiny"))
	if err != nil {
		t.Fatalf("build: %v\n%s", err, stderr)
	}
	if !strings.Contains(stdout, "tiny: initramfs image "+out) {
		t.Errorf("stdout = %q", stdout)
	}
	im, err := vmimage.Load(out)
	if err != nil || im.Manifest.Slug != "tiny" {
		t.Fatalf("Load = %v, %+v", err, im)
	}
	if !strings.Contains(stdout, "tiny: OCI image "+filepath.Join(out, "oci")+" sha256:") {
		t.Errorf("stdout lacks the OCI image line: %q", stdout)
	}
	// export and push of what build wrote.
	tar := filepath.Join(t.TempDir(), "tiny.tar")
	if stdout, stderr, err := run(t, "export", "--tag", "example.test/tiny:v1", out, tar); err != nil || !strings.Contains(stdout, "wrote "+tar) {
		t.Errorf("export: %q %v\n%s", stdout, err, stderr)
	}
	reg := registrytest.Start(t, registrytest.Options{})
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	ref := reg.Host + "/endpoints/tiny:v1"
	if stdout, stderr, err := run(t, "push", out, ref); err != nil || !strings.HasPrefix(stdout, "pushed "+reg.Host+"/endpoints/tiny@sha256:") {
		t.Errorf("push: %q %v\n%s", stdout, err, stderr)
	}
	// build --push: a cached rebuild pushed under another tag, same digest.
	stdout2, stderr, err := run(t, "build", "--cache", cache, "--push", reg.Host+"/endpoints/tiny:v2", "-o", out, filepath.Join(root, "examples", "images", "tiny"))
	if err != nil || !strings.Contains(stdout2, "pushed "+reg.Host+"/endpoints/tiny@sha256:") {
		t.Errorf("build --push: %q %v\n%s", stdout2, err, stderr)
	}
	if tags, _ := reg.Tags("endpoints/tiny"); len(tags) != 2 {
		t.Errorf("registry tags after push and build --push: %v", tags)
	}
	os.Remove(filepath.Join(out, "Dockerfile"))
	if _, stderr, err := run(t, "dockerfile", out); err != nil {
		t.Fatalf("dockerfile: %v\n%s", err, stderr)
	}
	raw, err := os.ReadFile(filepath.Join(out, "Dockerfile"))
	if err != nil || !strings.Contains(string(raw), "vmlinux") || !strings.Contains(string(raw), "ENTRYPOINT") {
		t.Errorf("Dockerfile = %q, %v", raw, err)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{nil, "no command"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"build", "examples/images/tiny"}, "-o OUT_DIR is required"},
		{[]string{"build", "-o", "x"}, "want 1 argument"},
		{[]string{"push", "x"}, "want 2 argument"},
		{[]string{"build", "--no-oci", "--push", "r/x:1", "-o", "x", "examples/images/tiny"}, "--push needs the OCI image"},
		{[]string{"export", "x"}, "want 2 argument"},
		{[]string{"build", "--bogus", "-o", "x", "y"}, "flag provided but not defined"},
		{[]string{"dockerfile"}, "want 1 argument"},
	} {
		_, _, err := run(t, tc.args...)
		if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Run(%q) = %v; want a usage error containing %q", tc.args, err, tc.want)
		}
		if exitCode(err) != 2 {
			t.Errorf("exitCode = %d; want 2", exitCode(err))
		}
	}
	if _, _, err := run(t, "help"); err != nil {
		t.Errorf("help: %v", err)
	}
}

func TestBuildBadRecipe(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "image.yaml"), []byte("slug: x\nkind: initramfs\nqemu:\n  memory: 1\n"), 0o644)
	_, _, err := run(t, "build", "-o", filepath.Join(dir, "out"), dir)
	want := filepath.Join(dir, "image.yaml") + `:4:3: qemu.memory: unknown key (known here: memoryMiB,`
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("build = %v; want %q", err, want)
	}
	if exitCode(err) != 1 {
		t.Errorf("exitCode = %d; want 1", exitCode(err))
	}
	if _, err := os.Stat(filepath.Join(dir, "out")); !os.IsNotExist(err) {
		t.Errorf("output directory created for a bad recipe: %v", err)
	}
	// Warnings are printed before the recipe's values are checked.
	os.WriteFile(filepath.Join(dir, "image.yaml"), []byte("slug: x\nkind: vm\n---\nslug: y\n"), 0o644)
	_, stderr, err := run(t, "build", "-o", filepath.Join(dir, "out"), dir)
	wantWarn := filepath.Join(dir, "image.yaml") + ":3:1: warning: a second YAML document is ignored"
	if err == nil || !strings.Contains(err.Error(), `kind: "vm": want one of`) || !strings.Contains(stderr, wantWarn) {
		t.Errorf("build = %v, stderr %q; want the kind error and %q", err, stderr, wantWarn)
	}
	if _, _, err := run(t, "build", "-o", filepath.Join(dir, "out"), filepath.Join(dir, "missing")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("missing recipe: %v", err)
	}
	if _, _, err := run(t, "dockerfile", dir); err == nil || !strings.Contains(err.Error(), "manifest.json") {
		t.Errorf("dockerfile on a non-image: %v", err)
	}
}
