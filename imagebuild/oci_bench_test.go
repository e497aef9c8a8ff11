package imagebuild_test

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/containerdtest"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
)

// BenchmarkOCIAssembly times, in one run, the tiny endpoint's VM build
// (no cache for the image; downloaded packages, kernel and agent cached),
// its OCI assembly from an empty cache (runtime packages resolved,
// downloaded, extracted, selected; launcher built; three layers written;
// boot check) and from a warm cache, and reports the compressed size of
// each layer and of the image. Run with -benchtime=1x.
func BenchmarkOCIAssembly(b *testing.B) {
	ektest.RequireRoot(b)
	ektest.RequireQEMU(b)
	imagetest.Tiny(b) // inputs in the cache
	r, err := imagebuild.LoadRecipe(filepath.Join(ektest.RepoRoot(b), "examples", "images", "tiny"))
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	// The VM build gets a cache of its own for images (others' tests
	// boot the shared cache's) over the shared downloads, kernels, agents.
	vmCache := b.TempDir()
	for _, sub := range []string{"debs", "kernels", "agents"} {
		if err := os.Symlink(filepath.Join(ektest.CacheDir(b), "imagebuild", sub), filepath.Join(vmCache, sub)); err != nil {
			b.Fatal(err)
		}
	}
	var vmT, coldT, warmT time.Duration
	var res *imagebuild.OCIResult
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		vb := imagebuild.New(imagebuild.Options{CacheDir: vmCache, GoDir: ektest.RepoRoot(b), NoCache: true})
		vres, err := vb.Build(ctx, r, filepath.Join(b.TempDir(), "tiny"))
		if err != nil {
			b.Fatal(err)
		}
		vmT += time.Since(t0)

		cold := imagebuild.New(imagebuild.Options{CacheDir: b.TempDir(), GoDir: ektest.RepoRoot(b)})
		t0 = time.Now()
		if _, err := cold.BuildOCI(ctx, vres.Image, imagebuild.OCIOptions{}); err != nil {
			b.Fatal(err)
		}
		coldT += time.Since(t0)
		t0 = time.Now()
		if res, err = cold.BuildOCI(ctx, vres.Image, imagebuild.OCIOptions{}); err != nil {
			b.Fatal(err)
		}
		warmT += time.Since(t0)
		b.Logf("iteration %d: VM build %v, OCI cold %v, OCI cached %v", i, vmT.Round(time.Millisecond), coldT.Round(time.Millisecond), warmT.Round(time.Millisecond))
	}
	n := float64(b.N)
	b.ReportMetric(vmT.Seconds()/n, "vm-build-s")
	b.ReportMetric(coldT.Seconds()/n, "oci-cold-s")
	b.ReportMetric(warmT.Seconds()/n, "oci-cached-s")
	b.ReportMetric(coldT.Seconds()/vmT.Seconds(), "cold/vm")
	b.ReportMetric(warmT.Seconds()/vmT.Seconds(), "cached/vm")
	for _, l := range res.Layers {
		b.ReportMetric(float64(l.Size)/1e6, l.Name+"-MB")
	}
	b.ReportMetric(float64(res.Size())/1e6, "image-MB")
	b.ReportMetric(0, "ns/op")
}

// BenchmarkContainerReady compares, alternating in one run, the time from
// `ctr run` of the tiny endpoint image (containerd + runc, privileged, in a
// namespace with eth0 on a bridge and eth1/eth2 veths) to the launcher's
// "ready" line (the guest answered SSH) with `endpoint run` of the same
// image directory and launcher binary in the same namespace without a
// container. Goal: ratio ≤ 1.10.
func BenchmarkContainerReady(b *testing.B) {
	im, _ := tinyOCI(b)
	tar := filepath.Join(b.TempDir(), "tiny.tar")
	ref := "endpointkit.local/tiny:bench"
	if err := imagebuild.Export(im.Dir, tar, ref); err != nil {
		b.Fatal(err)
	}
	d := containerdtest.Start(b, containerdtest.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	if out, err := d.Ctr(ctx, "default", "images", "import", tar); err != nil {
		b.Fatalf("import: %v %s", err, out)
	}
	// The launcher and image the container holds, unpacked for the bare run.
	root := filepath.Join(b.TempDir(), "rootfs")
	os.Mkdir(root, 0o755)
	if out, err := d.Ctr(ctx, "default", "images", "mount", ref, root); err != nil {
		b.Fatalf("images mount: %v %s", err, out)
	}
	bin := filepath.Join(b.TempDir(), "endpoint")
	raw, err := os.ReadFile(filepath.Join(root, imagebuild.ContainerEndpoint))
	if err != nil {
		b.Fatal(err)
	}
	os.WriteFile(bin, raw, 0o755)
	d.Ctr(ctx, "default", "images", "unmount", "--rm", root)
	n := newEndpointNet(b)
	lesson := b.TempDir()
	runContainer := func(id string) (time.Duration, string) {
		t0 := time.Now()
		c := startContainer(b, d, ref, id, n, lesson)
		c.waitReady(b, 5*time.Minute)
		ct := time.Since(t0)
		d.Ctr(ctx, "default", "tasks", "kill", "--signal", "SIGTERM", id)
		c.wait(b, 3*time.Minute)
		return ct, readyLine(c.output())
	}
	runBare := func(id string) (time.Duration, string) {
		t0 := time.Now()
		bare := exec.Command("ip", "netns", "exec", n.ns, bin, "run", "--image", im.Dir, "--lesson", lesson,
			"--name", id, "--state", filepath.Join(b.TempDir(), "state"))
		bare.Env = append(os.Environ(), "ENDPOINTKIT_ACCEL=tcg")
		out, _ := bare.StdoutPipe()
		if err := bare.Start(); err != nil {
			b.Fatal(err)
		}
		ready, said := false, ""
		for sc := bufio.NewScanner(out); !ready && sc.Scan(); {
			ready = strings.Contains(sc.Text(), ": ready in ")
			said = readyLine(sc.Text())
		}
		bt := time.Since(t0)
		bare.Process.Signal(os.Interrupt)
		bare.Wait()
		if !ready {
			b.Fatal("bare endpoint run exited before ready")
		}
		return bt, said
	}
	var sumC, sumB time.Duration
	for i := 0; i < b.N; i++ {
		id := ektest.Name("bench")
		var ct, bt time.Duration
		var cs, bs string
		if i%2 == 0 { // alternate who goes first: the machine's load drifts
			ct, cs = runContainer(id)
			bt, bs = runBare(id)
		} else {
			bt, bs = runBare(id)
			ct, cs = runContainer(id)
		}
		sumC += ct
		sumB += bt
		b.Logf("iteration %d: container %v (launcher said %q), bare %v (launcher said %q)", i, ct.Round(time.Millisecond),
			cs, bt.Round(time.Millisecond), bs)
	}
	b.ReportMetric(sumC.Seconds()*1000/float64(b.N), "container-ms")
	b.ReportMetric(sumB.Seconds()*1000/float64(b.N), "bare-ms")
	b.ReportMetric(sumC.Seconds()/sumB.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}

// readyLine is the launcher's "ready in Ns" phrase in out.
func readyLine(out string) string {
	i := strings.Index(out, "ready in ")
	if i < 0 {
		return ""
	}
	rest := out[i:]
	if j := strings.IndexAny(rest, " \n("); j >= 0 {
		if k := strings.IndexAny(rest[9:], " \n("); k >= 0 {
			return rest[:9+k]
		}
	}
	return rest
}
