package imagebuild

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// ErrPush: a registry refused or could not be reached. The error names the
// reference and, when the registry answered, the HTTP status.
var ErrPush = errors.New("push failed")

// ErrPlainHTTP: plain HTTP to a registry that is not on a loopback
// address, without PushOptions.Insecure.
var ErrPlainHTTP = errors.New("plain HTTP refused")

// PushOptions configure [Push].
type PushOptions struct {
	// CAFile is a PEM bundle of CAs trusted besides the system's.
	CAFile string
	// Insecure allows plain HTTP to any registry; without it only
	// loopback registries (127.0.0.0/8, ::1, localhost) may be plain HTTP.
	Insecure bool
	// Keychain finds credentials; default the Docker config keychain
	// ($DOCKER_CONFIG/config.json, ~/.docker/config.json, credential
	// helpers).
	Keychain authn.Keychain
	// Transport is the base HTTP transport (default a clone of
	// http.DefaultTransport).
	Transport *http.Transport
	// Progress, when set, receives upload progress updates.
	Progress chan<- v1.Update
	// StateFile is where Push remembers which repository of a registry
	// holds each blob it pushed, so that a push to another repository of
	// the same registry mounts those blobs (the QEMU runtime layer shared
	// by every endpoint image) instead of uploading them again, as docker
	// does. Default CACHE/oci/pushed.json (the builder's default cache);
	// "-" remembers nothing.
	StateFile string
}

// PushResult says what a push did.
type PushResult struct {
	Ref    string // the reference as given, normalised
	Digest string // manifest digest
	// Uploaded counts the request body bytes sent (blobs and manifest):
	// blobs the registry already had are not sent again.
	Uploaded int64
	Elapsed  time.Duration
}

// Pinned is the pushed image's reference by digest.
func (r *PushResult) Pinned() string {
	ref := r.Ref
	if i := lastColonAfterSlash(ref); i >= 0 {
		ref = ref[:i]
	}
	return ref + "@" + r.Digest
}

// Push uploads the OCI image of the image directory (or OCI layout) dir to
// ref with go-containerregistry's remote.Write: blobs first, each only if
// the registry lacks it, the tagged manifest last — so a failed or killed
// push never leaves the tag pointing at a partial image, and pushing again
// uploads only what is missing.
func Push(ctx context.Context, dir, ref string, opts PushOptions) (*PushResult, error) {
	start := time.Now()
	img, _, err := LoadOCI(dir)
	if err != nil {
		return nil, err
	}
	r, err := name.ParseReference(ref, name.StrictValidation)
	if err != nil {
		if r, err = name.ParseReference(ref); err != nil {
			return nil, fmt.Errorf("imagebuild: push %s: not an image reference (want REGISTRY/REPOSITORY:TAG): %v", ref, err)
		}
	}
	tr, err := pushTransport(opts)
	if err != nil {
		return nil, err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	state := opts.StateFile
	if state == "" {
		state = filepath.Join(defaultCacheDir(), "oci", "pushed.json")
	}
	known := loadPushed(state)
	img = mountFrom(img, r.Context(), known)
	counter := &countingTransport{base: tr, insecure: opts.Insecure}
	ropts := []remote.Option{remote.WithContext(ctx), remote.WithTransport(counter), remote.WithAuthFromKeychain(kc)}
	if opts.Progress != nil {
		ropts = append(ropts, remote.WithProgress(opts.Progress))
	}
	if err := remote.Write(r, img, ropts...); err != nil {
		return nil, pushError(r.Name(), err)
	}
	d, err := img.Digest()
	if err != nil {
		return nil, err
	}
	if state != "-" {
		rememberPushed(state, img, r.Context())
	}
	return &PushResult{Ref: r.Name(), Digest: d.String(), Uploaded: counter.sent.Load(), Elapsed: time.Since(start)}, nil
}

func pushTransport(opts PushOptions) (*http.Transport, error) {
	tr := opts.Transport
	if tr == nil {
		tr = http.DefaultTransport.(*http.Transport).Clone()
	} else {
		tr = tr.Clone()
	}
	if opts.CAFile != "" {
		pem, err := os.ReadFile(opts.CAFile)
		if err != nil {
			return nil, fmt.Errorf("imagebuild: --ca: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("imagebuild: --ca %s: no PEM certificate in it", opts.CAFile)
		}
		if tr.TLSClientConfig == nil {
			tr.TLSClientConfig = &tls.Config{}
		}
		tr.TLSClientConfig.RootCAs = pool
	}
	return tr, nil
}

// pushError names the reference and what the registry said.
func pushError(ref string, err error) error {
	var te *transport.Error
	var ue *x509.UnknownAuthorityError
	var he x509.HostnameError
	var ce *tls.CertificateVerificationError
	var oe *net.OpError
	switch {
	case errors.Is(err, ErrPlainHTTP):
		return fmt.Errorf("imagebuild: push %s: %w", ref, err)
	// A TLS failure first: for a loopback registry go-containerregistry
	// then retries over plain HTTP and reports that status too.
	case errors.As(err, &ue), errors.As(err, &he), errors.As(err, &ce), strings.Contains(err.Error(), "tls: failed to verify"):
		return fmt.Errorf("imagebuild: push %s: %w: TLS: %v (pass --ca FILE with the registry's CA)", ref, ErrPush, err)
	case errors.As(err, &te):
		return fmt.Errorf("imagebuild: push %s: %w: registry answered %d %s: %v%s", ref, ErrPush, te.StatusCode,
			http.StatusText(te.StatusCode), err, statusHint(te.StatusCode))
	case errors.As(err, &oe):
		return fmt.Errorf("imagebuild: push %s: %w: registry unreachable: %v", ref, ErrPush, err)
	}
	return fmt.Errorf("imagebuild: push %s: %w: %v", ref, ErrPush, err)
}

func statusHint(code int) string {
	switch code {
	case http.StatusUnauthorized, http.StatusForbidden:
		return " (log in: docker login, or credentials in $DOCKER_CONFIG/config.json)"
	case http.StatusNotFound:
		return " (does the repository exist, and is this a registry's address?)"
	}
	return ""
}

// countingTransport counts request body bytes and refuses plain HTTP to
// registries off the loopback unless insecure.
type countingTransport struct {
	base     http.RoundTripper
	insecure bool
	sent     atomic.Int64
}

func (c *countingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL.Scheme == "http" && !c.insecure && !isLoopback(req.URL) {
		return nil, fmt.Errorf("%w: %s is not a loopback address; use https, or pass --insecure", ErrPlainHTTP, req.URL.Host)
	}
	if req.Body != nil && req.Body != http.NoBody {
		req = req.Clone(req.Context())
		req.Body = &countingBody{rc: req.Body, n: &c.sent}
	}
	return c.base.RoundTrip(req)
}

func isLoopback(u *url.URL) bool {
	h := u.Hostname()
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

type countingBody struct {
	rc io.ReadCloser
	n  *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.n.Add(int64(n))
	return n, err
}

func (b *countingBody) Close() error { return b.rc.Close() }

// pushedBlobs maps registry → blob digest → a repository holding it.
type pushedBlobs map[string]map[string]string

func loadPushed(file string) pushedBlobs {
	p := pushedBlobs{}
	if file == "-" {
		return p
	}
	if raw, err := os.ReadFile(file); err == nil {
		json.Unmarshal(raw, &p)
	}
	return p
}

// rememberPushed records img's layers as present in repo (best effort).
func rememberPushed(file string, img v1.Image, repo name.Repository) {
	if err := os.MkdirAll(filepath.Dir(file), 0o755); err != nil {
		return
	}
	unlock, err := lockFile(context.Background(), file+".lock")
	if err != nil {
		return
	}
	defer unlock()
	p := loadPushed(file)
	reg := repo.RegistryStr()
	if p[reg] == nil {
		p[reg] = map[string]string{}
	}
	layers, _ := img.Layers()
	for _, l := range layers {
		if d, err := l.Digest(); err == nil {
			p[reg][d.String()] = repo.RepositoryStr()
		}
	}
	if raw, err := json.Marshal(p); err == nil {
		writeFileAtomic(file, raw, 0o644)
	}
}

// mountFrom wraps the layers that another repository of the same registry
// is known to hold as mountable from there; remote.Write then asks the
// registry to mount them (and uploads them only if that fails).
func mountFrom(img v1.Image, target name.Repository, known pushedBlobs) v1.Image {
	byDigest := known[target.RegistryStr()]
	if len(byDigest) == 0 {
		return img
	}
	return &mountingImage{Image: img, target: target, from: byDigest}
}

type mountingImage struct {
	v1.Image
	target name.Repository
	from   map[string]string
}

func (m *mountingImage) Layers() ([]v1.Layer, error) {
	ls, err := m.Image.Layers()
	if err != nil {
		return nil, err
	}
	out := make([]v1.Layer, len(ls))
	for i, l := range ls {
		out[i] = l
		d, err := l.Digest()
		if err != nil {
			continue
		}
		repo, ok := m.from[d.String()]
		if !ok || repo == m.target.RepositoryStr() {
			continue
		}
		if src, err := name.NewRepository(m.target.RegistryStr()+"/"+repo, name.WeakValidation); err == nil {
			out[i] = &remote.MountableLayer{Layer: l, Reference: src.Digest(d.String())}
		}
	}
	return out, nil
}

// ErrNotInRegistry: the registry answered that it does not have the
// reference's manifest.
var ErrNotInRegistry = errors.New("not in the registry")

// Lookup asks the registry of ref (REGISTRY/REPOSITORY:TAG or @DIGEST)
// for its manifest's digest without downloading anything, with Push's
// transport rules (CA, plain HTTP only to loopback unless Insecure,
// credentials from the keychain). An image the registry lacks is an error
// wrapping ErrNotInRegistry; an unreachable or refusing registry one
// wrapping ErrPush.
func Lookup(ctx context.Context, ref string, opts PushOptions) (string, error) {
	var nopts []name.Option
	if opts.Insecure {
		nopts = append(nopts, name.Insecure)
	}
	r, err := name.ParseReference(ref, nopts...)
	if err != nil {
		return "", fmt.Errorf("imagebuild: %s: not an image reference (want REGISTRY/REPOSITORY:TAG or @sha256:…): %v", ref, err)
	}
	tr, err := pushTransport(opts)
	if err != nil {
		return "", err
	}
	kc := opts.Keychain
	if kc == nil {
		kc = authn.DefaultKeychain
	}
	desc, err := remote.Head(r, remote.WithContext(ctx), remote.WithTransport(&countingTransport{base: tr, insecure: opts.Insecure}), remote.WithAuthFromKeychain(kc))
	if err != nil {
		var te *transport.Error
		if errors.As(err, &te) && te.StatusCode == http.StatusNotFound {
			return "", fmt.Errorf("imagebuild: %s: %w", r.Name(), ErrNotInRegistry)
		}
		return "", fmt.Errorf("imagebuild: look up %s: %w: %v", r.Name(), ErrPush, err)
	}
	return desc.Digest.String(), nil
}
