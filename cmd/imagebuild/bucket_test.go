package main

// The raw-image store and disk URLs through the real cloud drivers this
// command registers (drivers.go): gocloud.dev's s3blob (AWS SDK v2) and
// gcsblob (cloud.google.com/go/storage), each against an in-process server
// that speaks the cloud's wire protocol over loopback HTTP — gofakes3 for
// the S3 REST API, fake-gcs-server for the GCS JSON API. No network, no
// account. The fakes accept any credentials: signing and IAM are not
// tested here.

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/endpointkit/endpointkit/imagebuild"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/fsouza/fake-gcs-server/fakestorage"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
)

// objectServer is an in-process object store reached through a bucket
// URL; its methods act on the server directly, not through the driver.
type objectServer struct {
	url    func(bucket, key string) string // bucket URL, or object URL when key != ""
	create func(bucket string)
	put    func(bucket, key string, data []byte)
	keys   func(bucket string) []string
}

// objectServers starts each kind of server on loopback for one test.
var objectServers = []struct {
	scheme string
	start  func(t *testing.T) objectServer
}{{"s3", startS3}, {"gs", startGCS}}

// s3Env points the AWS SDK at throw-away credentials and away from the
// user's ~/.aws and the EC2 metadata service.
func s3Env(t *testing.T) {
	none := filepath.Join(t.TempDir(), "none")
	for k, v := range map[string]string{"AWS_ACCESS_KEY_ID": "endpointkit", "AWS_SECRET_ACCESS_KEY": "endpointkit-secret",
		"AWS_SESSION_TOKEN": "", "AWS_PROFILE": "", "AWS_REGION": "", "AWS_CONFIG_FILE": none,
		"AWS_SHARED_CREDENTIALS_FILE": none, "AWS_EC2_METADATA_DISABLED": "true"} {
		t.Setenv(k, v)
	}
}

func startS3(t *testing.T) objectServer {
	s3Env(t)
	be := s3mem.New()
	srv := httptest.NewServer(gofakes3.New(be).Server())
	t.Cleanup(srv.Close)
	return objectServer{
		url: func(bucket, key string) string {
			u := fmt.Sprintf("s3://%s?endpoint=%s&use_path_style=true&region=us-east-1", bucket, srv.URL)
			if key != "" {
				// Objects put straight into the backend carry no checksum
				// headers; this keeps the SDK from warning about it on
				// stderr. Store URLs keep the SDK's default (when_supported).
				u = fmt.Sprintf("s3://%s/%s?endpoint=%s&use_path_style=true&region=us-east-1&response_checksum_validation=when_required", bucket, key, srv.URL)
			}
			return u
		},
		create: func(bucket string) {
			if err := be.CreateBucket(bucket); err != nil {
				t.Fatal(err)
			}
		},
		put: func(bucket, key string, data []byte) {
			// Replace the object as S3 does: s3mem would keep the old
			// object's metadata, checksum headers included.
			if _, err := be.DeleteObject(bucket, key); err != nil {
				t.Fatal(err)
			}
			if _, err := be.PutObject(bucket, key, map[string]string{}, bytes.NewReader(data), int64(len(data)), nil); err != nil {
				t.Fatal(err)
			}
		},
		keys: func(bucket string) []string {
			l, err := be.ListBucket(bucket, nil, gofakes3.ListBucketPage{})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, c := range l.Contents {
				keys = append(keys, c.Key)
			}
			return keys
		},
	}
}

func startGCS(t *testing.T) objectServer {
	// The storage client reads objects from the emulator host's XML path
	// (/BUCKET/KEY), which fake-gcs-server serves only for its public host.
	srv, err := fakestorage.NewServerWithOptions(fakestorage.Options{Scheme: "http", Host: "127.0.0.1", PublicHost: "127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	// gcsblob has no endpoint URL parameter; this variable is how the
	// storage client is pointed at an emulator.
	t.Setenv("STORAGE_EMULATOR_HOST", strings.TrimPrefix(srv.URL(), "http://"))
	return objectServer{
		url: func(bucket, key string) string {
			if key != "" {
				bucket += "/" + key
			}
			return "gs://" + bucket
		},
		create: func(bucket string) { srv.CreateBucketWithOpts(fakestorage.CreateBucketOpts{Name: bucket}) },
		put: func(bucket, key string, data []byte) {
			srv.CreateObject(fakestorage.Object{ObjectAttrs: fakestorage.ObjectAttrs{BucketName: bucket, Name: key}, Content: data})
		},
		keys: func(bucket string) []string {
			objs, _, err := srv.ListObjectsWithOptions(bucket, fakestorage.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var keys []string
			for _, o := range objs {
				keys = append(keys, o.Name)
			}
			return keys
		},
	}
}

func sha256Hex(data []byte) string {
	h := sha256.Sum256(data)
	return hex.EncodeToString(h[:])
}

func TestStoreInBucket(t *testing.T) {
	for _, server := range objectServers {
		t.Run(server.scheme, func(t *testing.T) {
			ctx := context.Background()
			srv := server.start(t)
			srv.create("store")
			s, err := imagebuild.OpenStore(ctx, srv.url("store", ""))
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			data := bytes.Repeat([]byte("vendor disk bytes "), 1<<16) // 1.1 MiB
			sum, wrong := sha256Hex(data), strings.Repeat("a", 64)

			if err := s.Put(ctx, wrong, bytes.NewReader(data)); !errors.Is(err, imagebuild.ErrChecksum) || !strings.Contains(err.Error(), sum) {
				t.Errorf("Put with a wrong sum = %v; want ErrChecksum naming the content's sum %s", err, sum)
			}
			if keys := srv.keys("store"); len(keys) != 0 {
				t.Fatalf("the bucket holds %q after a refused Put", keys)
			}
			if has, err := s.Has(ctx, wrong); has || err != nil {
				t.Errorf("Has(wrong) = %v, %v", has, err)
			}

			if err := s.Put(ctx, sum, bytes.NewReader(data)); err != nil {
				t.Fatal(err)
			}
			if keys := srv.keys("store"); !reflect.DeepEqual(keys, []string{"sha256/" + sum}) {
				t.Errorf("bucket keys = %q; want sha256/%s", keys, sum)
			}
			if has, err := s.Has(ctx, sum); !has || err != nil {
				t.Errorf("Has = %v, %v", has, err)
			}
			var got bytes.Buffer
			if err := s.Get(ctx, sum, &got); err != nil || !bytes.Equal(got.Bytes(), data) {
				t.Errorf("Get = %d bytes, %v; want the %d bytes put", got.Len(), err, len(data))
			}
			if err := s.Get(ctx, wrong, &got); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("Get(missing) = %v; want ErrNotExist", err)
			}

			// An object changed behind the store's back is refused on read.
			srv.put("store", "sha256/"+sum, []byte("tampered"))
			if err := s.Get(ctx, sum, &got); !errors.Is(err, imagebuild.ErrChecksum) {
				t.Errorf("Get of a tampered object = %v; want ErrChecksum", err)
			}
		})
	}
}

// TestBuildDiskFromBucket is the user's path: a disk recipe whose url is
// an object in a bucket, built by `imagebuild build` with the store in
// another bucket. Then the object is corrupted and a rebuild is refused,
// naming the URL and both sums, with nothing left behind and the previous
// image untouched.
func TestBuildDiskFromBucket(t *testing.T) {
	vmdk, sum := ektest.VendorDisk(t)
	data, err := os.ReadFile(vmdk)
	if err != nil {
		t.Fatal(err)
	}
	for _, server := range objectServers {
		t.Run(server.scheme, func(t *testing.T) {
			srv := server.start(t)
			for _, b := range []string{"vendor", "store", "store2"} {
				srv.create(b)
			}
			key := "images/vendor-1.0.vmdk"
			srv.put("vendor", key, data)
			srcURL := srv.url("vendor", key)
			dir := t.TempDir()
			recipe := filepath.Join(dir, "image.yaml")
			if err := os.WriteFile(recipe, []byte("slug: vendor\nkind: disk\ndisk:\n  url: '"+srcURL+"'\n  sha256: "+sum+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			cache, outs := t.TempDir(), t.TempDir()
			out := filepath.Join(outs, "vendor")

			// --no-oci: this test is about the store; the OCI image would
			// cost a QEMU runtime layer made from scratch in this empty cache.
			stdout, stderr, err := run(t, "build", "--no-oci", "--cache", cache, "--store", srv.url("store", ""), "-o", out, dir)
			if err != nil {
				t.Fatalf("build: %v\n%s", err, stderr)
			}
			if !strings.Contains(stdout, "vendor: disk image "+out) {
				t.Errorf("stdout = %q", stdout)
			}
			qemuImgSame(t, vmdk, filepath.Join(out, imagebuild.DiskFile))
			if keys := srv.keys("store"); !reflect.DeepEqual(keys, []string{"sha256/" + sum}) {
				t.Errorf("store keys = %q; want the vendor disk under sha256/%s", keys, sum)
			}
			before := dirSums(t, out)

			bad := bytes.Clone(data)
			bad[len(bad)/2] ^= 0xff
			badSum := sha256Hex(bad)
			srv.put("vendor", key, bad)
			_, _, err = run(t, "build", "--no-cache", "--cache", cache, "--store", srv.url("store2", ""), "-o", out, dir)
			for _, want := range []string{recipe + ":5:11: disk.sha256: ", srcURL, "has sha256 " + badSum, "expected " + sum} {
				if err == nil || !strings.Contains(err.Error(), want) {
					t.Errorf("build of a corrupted object = %v; want it to contain %q", err, want)
				}
			}
			if !errors.Is(err, imagebuild.ErrChecksum) || exitCode(err) != 1 {
				t.Errorf("error %v: want ErrChecksum, exit code 1", err)
			}
			if keys := srv.keys("store2"); len(keys) != 0 {
				t.Errorf("the store kept %q from a corrupted source", keys)
			}
			if after := dirSums(t, out); !reflect.DeepEqual(after, before) {
				t.Errorf("the previous image changed:\n before %v\n after  %v", before, after)
			}
			assertOnly(t, outs, "vendor")
			assertNoTemp(t, cache)

			// A missing object names the URL.
			os.WriteFile(recipe, []byte("slug: vendor\nkind: disk\ndisk:\n  url: '"+srv.url("vendor", "images/gone.vmdk")+"'\n  sha256: "+sum+"\n"), 0o644)
			_, _, err = run(t, "build", "--no-cache", "--cache", cache, "--store", srv.url("store2", ""), "-o", out, dir)
			if err == nil || !strings.Contains(err.Error(), recipe+":4:3: disk: ") || !strings.Contains(err.Error(), "images/gone.vmdk") {
				t.Errorf("build of a missing object = %v; want the recipe position and the URL", err)
			}
		})
	}
}

// qemuImgSame fails unless two disk images hold the same guest-visible bytes.
func qemuImgSame(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("qemu-img", "compare", a, b).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s %s: %v %s", a, b, err, out)
	}
}

// dirSums maps each file in dir to its sha256.
func dirSums(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, e := range ents {
		if e.IsDir() { // oci/: the OCI layout, content-addressed itself
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		sums[e.Name()] = sha256Hex(raw)
	}
	return sums
}

// assertOnly fails unless dir holds exactly names.
func assertOnly(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if !reflect.DeepEqual(got, names) {
		t.Errorf("%s holds %q; want only %q", dir, got, names)
	}
}

// assertNoTemp fails if anything under dir looks like a build's
// temporary file or directory.
func assertNoTemp(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if imagebuild.IsTempName(d.Name()) {
			t.Errorf("temporary file left: %s", path)
		}
		return nil
	})
}
