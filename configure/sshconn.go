package configure

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// DialOptions bound SSH connection attempts. Only transient failures
// (refused, reset, timed out, closed during the handshake) are retried;
// authentication and host-key failures never are.
type DialOptions struct {
	Attempts       int           // default 3
	AttemptTimeout time.Duration // TCP connect + SSH handshake; default 10 s
}

func (o DialOptions) withDefaults() DialOptions {
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 10 * time.Second
	}
	return o
}

// transientError marks a connection failure worth retrying.
type transientError struct{ err error }

func (e *transientError) Error() string { return e.err.Error() }
func (e *transientError) Unwrap() error { return e.err }

// clientConfig builds the SSH client configuration of t (auth methods and
// host-key verification for addr).
func clientConfig(t Target, addr string) (*ssh.ClientConfig, error) {
	var auth []ssh.AuthMethod
	if t.KeyFile != "" {
		raw, err := os.ReadFile(t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("key file: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("key file %s: %w", t.KeyFile, err)
		}
		auth = append(auth, ssh.PublicKeys(signer))
	}
	if t.Password != "" {
		pw := t.Password.Reveal()
		auth = append(auth, ssh.Password(pw), ssh.KeyboardInteractive(func(_, _ string, qs []string, _ []bool) ([]string, error) {
			ans := make([]string, len(qs))
			for i := range ans {
				ans[i] = pw
			}
			return ans, nil
		}))
	}
	cb, algos, err := hostKeyCallback(t.HostKeys, addr)
	if err != nil {
		return nil, err
	}
	return &ssh.ClientConfig{User: t.User, Auth: auth, HostKeyCallback: cb, HostKeyAlgorithms: algos}, nil
}

// hostKeyCallback turns a policy into a callback, and the host-key
// algorithms to ask for so the server presents a key the policy knows.
func hostKeyCallback(p HostKeyPolicy, addr string) (ssh.HostKeyCallback, []string, error) {
	if p.InsecureIgnore {
		return ssh.InsecureIgnoreHostKey(), nil, nil
	}
	if p.empty() {
		return nil, nil, fmt.Errorf("%w for %s: pin the image's host keys, give a known_hosts file, or opt in to InsecureIgnore", ErrNoHostKeyPolicy, addr)
	}
	pinned := map[string]bool{}
	var want []string
	types := map[string]bool{}
	for _, k := range p.Pinned {
		pinned[k.Fingerprint] = true
		want = append(want, k.Fingerprint)
		if k.Type != "" {
			types[k.Type] = true
		}
	}
	var known ssh.HostKeyCallback
	if p.KnownHostsFile != "" {
		cb, err := knownhosts.New(p.KnownHostsFile)
		if err != nil {
			return nil, nil, fmt.Errorf("known_hosts: %w", err)
		}
		known = cb
		for _, k := range knownKeys(cb, addr) {
			types[k.Type()] = true
		}
		want = append(want, "a key listed for "+knownhosts.Normalize(addr)+" in "+p.KnownHostsFile)
	}
	cb := func(host string, remote net.Addr, key ssh.PublicKey) error {
		fp := ssh.FingerprintSHA256(key)
		if pinned[fp] {
			return nil
		}
		if known != nil && known(host, remote, key) == nil {
			return nil
		}
		return &HostKeyError{Address: addr, Got: key.Type() + " " + fp, Want: want}
	}
	return cb, hostKeyAlgorithms(types), nil
}

// knownKeys lists the keys a known_hosts callback holds for addr, by
// asking it about a throw-away key (its KeyError lists the known ones).
func knownKeys(cb ssh.HostKeyCallback, addr string) []ssh.PublicKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil
	}
	probe, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil
	}
	remote, _ := net.ResolveTCPAddr("tcp", addr)
	var ke *knownhosts.KeyError
	if errors.As(cb(addr, remote, probe), &ke) {
		keys := make([]ssh.PublicKey, len(ke.Want))
		for i, k := range ke.Want {
			keys[i] = k.Key
		}
		return keys
	}
	return nil
}

// hostKeyAlgorithms maps key types to the signature algorithms that make
// a server present a key of that type (nil: x/crypto's defaults).
func hostKeyAlgorithms(types map[string]bool) []string {
	var out []string
	for _, a := range []string{ssh.KeyAlgoED25519, ssh.KeyAlgoECDSA256, ssh.KeyAlgoECDSA384, ssh.KeyAlgoECDSA521} {
		if types[a] {
			out = append(out, a)
		}
	}
	if types[ssh.KeyAlgoRSA] {
		out = append(out, ssh.KeyAlgoRSASHA512, ssh.KeyAlgoRSASHA256, ssh.KeyAlgoRSA)
	}
	return out
}

// dialOnce connects and completes the SSH handshake within ctx: the TCP
// connect uses the context, and the connection is closed if the context
// ends during the handshake (x/crypto's handshake takes no context).
func dialOnce(ctx context.Context, addr string, cfg *ssh.ClientConfig) (*ssh.Client, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &transientError{err}
	}
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	c, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if !stop() {
		if err == nil {
			c.Close()
		}
		return nil, &transientError{fmt.Errorf("ssh handshake with %s: %w", addr, ctx.Err())}
	}
	if err != nil {
		conn.Close()
		return nil, classifyHandshake(addr, err)
	}
	return ssh.NewClient(c, chans, reqs), nil
}

// classifyHandshake sorts handshake failures into authentication,
// host-key and transient errors.
func classifyHandshake(addr string, err error) error {
	var hk *HostKeyError
	switch {
	case errors.As(err, &hk):
		return hk
	case strings.Contains(err.Error(), "unable to authenticate"):
		return fmt.Errorf("%w by %s: check the user, password and key", ErrAuth, addr)
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, net.ErrClosed), isTimeout(err):
		return &transientError{fmt.Errorf("ssh handshake with %s: %w", addr, err)}
	}
	return fmt.Errorf("ssh handshake with %s: %w", addr, err)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// dialSSH connects to addr as t, retrying transient failures with
// exponential backoff.
func dialSSH(ctx context.Context, t Target, addr string, o DialOptions) (*ssh.Client, error) {
	o = o.withDefaults()
	cfg, err := clientConfig(t, addr)
	if err != nil {
		return nil, err
	}
	var last error
	op := func() (*ssh.Client, error) {
		actx, cancel := context.WithTimeout(ctx, o.AttemptTimeout)
		defer cancel()
		c, err := dialOnce(actx, addr, cfg)
		last = err
		var te *transientError
		if err != nil && !errors.As(err, &te) {
			return nil, backoff.Permanent(err)
		}
		return c, err
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = 200 * time.Millisecond
	c, err := backoff.Retry(ctx, op, backoff.WithBackOff(eb), backoff.WithMaxTries(uint(o.Attempts)))
	if err == nil {
		return c, nil
	}
	var pe *backoff.PermanentError
	if errors.As(err, &pe) {
		return nil, pe.Unwrap()
	}
	var te *transientError
	if errors.As(last, &te) {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("connect to %s: %w (last attempt: %v)", addr, ctx.Err(), te.err)
		}
		return nil, fmt.Errorf("connect to %s (%d attempts): %w", addr, o.Attempts, te.err)
	}
	return nil, err
}

// closeOnDone closes c when ctx ends, so blocked reads and writes return;
// call the returned func to stop watching.
func closeOnDone(ctx context.Context, c io.Closer) func() bool {
	return context.AfterFunc(ctx, func() { c.Close() })
}
