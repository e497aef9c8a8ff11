package imagebuild

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"strings"

	"gocloud.dev/blob"
	_ "gocloud.dev/blob/fileblob" // file:// stores and sources
	_ "gocloud.dev/blob/memblob"  // mem:// (tests)
	"gocloud.dev/gcerrors"
)

// Store keeps raw vendor disk images by sha256 in a gocloud.dev/blob
// bucket: file:///dir by default; gs://bucket, s3://bucket and the like
// when the program imports the driver (cmd/imagebuild imports gcsblob and
// s3blob). Every read and write is verified against the sha256.
type Store struct {
	bucket *blob.Bucket
	url    string
}

// OpenStore opens the store at a bucket URL.
func OpenStore(ctx context.Context, bucketURL string) (*Store, error) {
	if strings.HasPrefix(bucketURL, "file://") {
		if err := os.MkdirAll(strings.TrimPrefix(strings.SplitN(bucketURL, "?", 2)[0], "file://"), 0o755); err != nil {
			return nil, fmt.Errorf("imagebuild: store %s: %w", bucketURL, err)
		}
	}
	b, err := blob.OpenBucket(ctx, bucketURL)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: store %s: %w", bucketURL, err)
	}
	return &Store{bucket: b, url: bucketURL}, nil
}

// Close releases the bucket.
func (s *Store) Close() error { return s.bucket.Close() }

func storeKey(sum string) string { return "sha256/" + sum }

// Has reports whether the store holds the image with this sha256.
func (s *Store) Has(ctx context.Context, sum string) (bool, error) {
	return s.bucket.Exists(ctx, storeKey(sum))
}

// Put stores r's content under its sha256, which must equal sum; on a
// mismatch nothing is stored and the error wraps ErrChecksum.
func (s *Store) Put(ctx context.Context, sum string, r io.Reader) error {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	w, err := s.bucket.NewWriter(wctx, storeKey(sum), nil)
	if err != nil {
		return fmt.Errorf("imagebuild: store %s: %w", s.url, err)
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), r); err != nil {
		cancel() // aborts the write
		w.Close()
		return fmt.Errorf("imagebuild: store %s: %w", s.url, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		cancel()
		w.Close()
		return fmt.Errorf("imagebuild: %w: content has sha256 %s, expected %s", ErrChecksum, got, sum)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("imagebuild: store %s: %w", s.url, err)
	}
	return nil
}

// Get copies the image with this sha256 to w, verifying it.
func (s *Store) Get(ctx context.Context, sum string, w io.Writer) error {
	r, err := s.bucket.NewReader(ctx, storeKey(sum), nil)
	if err != nil {
		if gcerrors.Code(err) == gcerrors.NotFound {
			return fmt.Errorf("imagebuild: store %s has no image with sha256 %s: %w", s.url, sum, os.ErrNotExist)
		}
		return fmt.Errorf("imagebuild: store %s: %w", s.url, err)
	}
	defer r.Close()
	return copyVerified(w, r, sum, s.url)
}

func copyVerified(w io.Writer, r io.Reader, sum, what string) error {
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w, h), r); err != nil {
		return fmt.Errorf("imagebuild: %s: %w", what, err)
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != sum {
		return fmt.Errorf("imagebuild: %s: %w: got %s, want %s", what, ErrChecksum, got, sum)
	}
	return nil
}

// openSource opens a vendor disk by path or URL: http(s) with net/http
// (see fetch.go), any other scheme through the blob driver registered for
// it (file:///dir/name.qcow2 opens bucket file:///dir, key name.qcow2).
func openSource(ctx context.Context, d *DiskSource) (io.ReadCloser, error) {
	if d.Path != "" {
		return os.Open(d.Path)
	}
	u, err := url.Parse(d.URL)
	if err != nil {
		return nil, fmt.Errorf("imagebuild: disk url %q: %w", d.URL, err)
	}
	switch u.Scheme {
	case "http", "https":
		return httpGet(ctx, d.URL)
	case "":
		return nil, fmt.Errorf("imagebuild: disk url %q has no scheme", d.URL)
	}
	dir, key := path.Split(u.Path)
	if u.Scheme != "file" {
		dir, key = "", strings.TrimPrefix(u.Path, "/")
	}
	bu := *u
	bu.Path = strings.TrimSuffix(dir, "/")
	if bu.Scheme == "file" && bu.Path == "" {
		bu.Path = "/"
	}
	b, err := blob.OpenBucket(ctx, bu.String())
	if err != nil {
		return nil, fmt.Errorf("imagebuild: disk url %s: %w", d.URL, err)
	}
	r, err := b.NewReader(ctx, key, nil)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("imagebuild: disk url %s: %w", d.URL, err)
	}
	return &bucketReader{Reader: r, bucket: b}, nil
}

type bucketReader struct {
	*blob.Reader
	bucket *blob.Bucket
}

func (b *bucketReader) Close() error {
	return errors.Join(b.Reader.Close(), b.bucket.Close())
}

// storeURL is the default raw-image store under the cache directory.
func storeURL(cacheDir string) string {
	abs, _ := filepath.Abs(filepath.Join(cacheDir, "disks"))
	return "file://" + abs
}
