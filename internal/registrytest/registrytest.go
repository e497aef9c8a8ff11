// Package registrytest starts a private container registry for a test:
// Debian's docker-registry (CNCF distribution 2.8) on a free 127.0.0.1
// port, by PID, storing blobs in a directory of the test, optionally over
// TLS with a CA made for it and behind htpasswd basic auth. It is stopped
// when the test ends.
//
//	reg := registrytest.Start(t, registrytest.Options{})
//	ref := reg.Host + "/endpoints/tiny:v1"
//
// Tests skip, with the reason, when docker-registry is not installed
// (`make deps`).
package registrytest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"golang.org/x/crypto/bcrypt"
)

// Binary is Debian's name for the distribution registry.
const Binary = "docker-registry"

// Options configure [Start]. The zero value serves plain HTTP without
// authentication.
type Options struct {
	// TLS serves HTTPS with a certificate for 127.0.0.1 signed by a CA
	// made for this registry (Registry.CAFile).
	TLS bool
	// User and Password, when set, require HTTP basic auth (htpasswd).
	User, Password string
}

// Registry is a running registry.
type Registry struct {
	// Host is 127.0.0.1:PORT, the registry part of image references.
	Host string
	// Dir holds the configuration, the storage (Dir/storage), the log and,
	// with TLS, ca.pem, cert.pem and key.pem.
	Dir string
	// CAFile is the PEM CA that signed the serving certificate ("" without
	// TLS).
	CAFile string

	opts Options
	cmd  *exec.Cmd
	done chan struct{}
	log  *os.File
}

// PID is the registry's process id.
func (r *Registry) PID() int { return r.cmd.Process.Pid }

// Storage is the registry's blob store directory.
func (r *Registry) Storage() string { return filepath.Join(r.Dir, "storage") }

// URL is the registry's base URL (http:// or https://).
func (r *Registry) URL() string {
	if r.opts.TLS {
		return "https://" + r.Host
	}
	return "http://" + r.Host
}

// Log returns what the registry logged so far.
func (r *Registry) Log() string {
	raw, _ := os.ReadFile(filepath.Join(r.Dir, "registry.log"))
	return string(raw)
}

// Start starts a registry and stops it when the test ends.
func Start(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	ektest.RequireTool(tb, Binary)
	r := &Registry{Dir: tb.TempDir(), opts: opts}
	if err := r.prepare(); err != nil {
		tb.Fatalf("registrytest: %v", err)
	}
	var err error
	for attempt := 0; attempt < 10; attempt++ {
		if err = r.start(); err == nil {
			tb.Cleanup(r.Stop)
			return r
		}
	}
	tb.Fatalf("registrytest: %v\n%s", err, r.Log())
	return nil
}

func (r *Registry) prepare() error {
	if r.opts.TLS {
		if err := writeTLS(r.Dir); err != nil {
			return err
		}
		r.CAFile = filepath.Join(r.Dir, "ca.pem")
	}
	if r.opts.User != "" {
		hash, err := bcrypt.GenerateFromPassword([]byte(r.opts.Password), bcrypt.MinCost)
		if err != nil {
			return err
		}
		line := r.opts.User + ":" + string(hash) + "\n"
		if err := os.WriteFile(filepath.Join(r.Dir, "htpasswd"), []byte(line), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// config renders the registry's config.yml for addr.
func (r *Registry) config(addr string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: false\n")
	fmt.Fprintf(&b, "storage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\n", r.Storage())
	fmt.Fprintf(&b, "http:\n  addr: %s\n", addr)
	if r.opts.TLS {
		fmt.Fprintf(&b, "  tls:\n    certificate: %s\n    key: %s\n", filepath.Join(r.Dir, "cert.pem"), filepath.Join(r.Dir, "key.pem"))
	}
	if r.opts.User != "" {
		fmt.Fprintf(&b, "auth:\n  htpasswd:\n    realm: registrytest\n    path: %s\n", filepath.Join(r.Dir, "htpasswd"))
	}
	return b.String()
}

func (r *Registry) start() error {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	conf := filepath.Join(r.Dir, "config.yml")
	if err := os.WriteFile(conf, []byte(r.config(addr)), 0o644); err != nil {
		return err
	}
	if r.log, err = os.Create(filepath.Join(r.Dir, "registry.log")); err != nil {
		return err
	}
	r.Host = addr
	r.done = make(chan struct{})
	r.cmd = exec.Command(Binary, "serve", conf)
	r.cmd.Stdout, r.cmd.Stderr = r.log, r.log
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := r.cmd.Start(); err != nil {
		r.log.Close()
		return fmt.Errorf("start %s: %w", Binary, err)
	}
	go func() { r.cmd.Wait(); close(r.done) }()
	client := r.Client()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := client.Get(r.URL() + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
		}
		select {
		case <-r.done:
			r.log.Close()
			return fmt.Errorf("%s exited at start-up on %s", Binary, addr)
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			r.Stop()
			return fmt.Errorf("%s on %s did not answer /v2/ within 20s (last error %v)", Binary, addr, err)
		}
	}
}

// Client is an HTTP client that trusts the registry's CA.
func (r *Registry) Client() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if r.CAFile != "" {
		pool := x509.NewCertPool()
		pem, _ := os.ReadFile(r.CAFile)
		pool.AppendCertsFromPEM(pem)
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// Stop ends the registry (SIGTERM, then SIGKILL after 10 s). Idempotent.
func (r *Registry) Stop() {
	select {
	case <-r.done:
	default:
		r.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-r.done:
		case <-time.After(10 * time.Second):
			r.cmd.Process.Kill()
			<-r.done
		}
	}
	r.log.Close()
}

// Blobs lists the digests (sha256:…) of the blobs the registry stores.
func (r *Registry) Blobs() ([]string, error) {
	root := filepath.Join(r.Storage(), "docker", "registry", "v2", "blobs", "sha256")
	var out []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if os.IsNotExist(err) {
			return filepath.SkipAll
		}
		if err != nil {
			return err
		}
		if d.Name() == "data" {
			out = append(out, "sha256:"+filepath.Base(filepath.Dir(p)))
		}
		return nil
	})
	return out, err
}

// Tags lists the tags of repository repo as the registry stores them.
func (r *Registry) Tags(repo string) ([]string, error) {
	ents, err := os.ReadDir(filepath.Join(r.Storage(), "docker", "registry", "v2", "repositories", repo, "_manifests", "tags"))
	if os.IsNotExist(err) {
		return nil, nil
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out, err
}

// writeTLS makes a CA and a serving certificate for 127.0.0.1 in dir.
func writeTLS(dir string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "registrytest CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	files := map[string][]byte{
		"ca.pem":   pemBlock("CERTIFICATE", caDER),
		"cert.pem": pemBlock("CERTIFICATE", der),
		"key.pem":  pemBlock("EC PRIVATE KEY", keyDER),
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

func pemBlock(typ string, der []byte) []byte {
	var b bytes.Buffer
	pem.Encode(&b, &pem.Block{Type: typ, Bytes: der})
	return b.Bytes()
}

// Port is the registry's TCP port.
func (r *Registry) Port() int {
	_, p, _ := net.SplitHostPort(r.Host)
	n, _ := strconv.Atoi(p)
	return n
}
