package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"

	"golang.org/x/crypto/curve25519"
	"golang.org/x/crypto/ssh"
)

// Server is the agent's SSH server. Its zero value is not usable: set
// HostKeys and Users (or use [NewServer]).
type Server struct {
	// HostKeys sign the handshake.
	HostKeys []ssh.Signer
	// Users may log in (by password when PasswordHash is set, and by any
	// key in their ~/.ssh/authorized_keys).
	Users []User
	// SFTPCommand starts an sftp server on stdin/stdout; it runs as the
	// logged-in user. Empty: this executable with the argument
	// "sftp-server". When the logged-in user is the server's own user, the
	// sftp server runs in-process instead.
	SFTPCommand []string
	// Logger receives one line per connection and session; nil discards.
	Logger *slog.Logger
	// Lookup finds a user's account (uid, gid, home); nil means
	// os/user.Lookup.
	Lookup func(name string) (*user.User, error)
}

func (s *Server) lookup(name string) (*user.User, error) {
	if s.Lookup != nil {
		return s.Lookup(name)
	}
	return user.Lookup(name)
}

// NewServer loads the host keys and users of c.
func NewServer(c SSHConfig, log *slog.Logger) (*Server, error) {
	s := &Server{Users: c.Users, Logger: log}
	for _, path := range c.HostKeys {
		raw, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("agent: host key: %w", err)
		}
		signer, err := ssh.ParsePrivateKey(raw)
		if err != nil {
			return nil, fmt.Errorf("agent: host key %s: %w", path, err)
		}
		s.HostKeys = append(s.HostKeys, signer)
	}
	return s, nil
}

// warmUp runs the handshake's cryptography once, so the lazily computed
// tables (ed25519 base point, curve25519) are ready before the first
// client: under TCG they cost about a second.
func (s *Server) warmUp() {
	for _, k := range s.HostKeys {
		k.Sign(rand.Reader, []byte("warm up"))
	}
	var scalar [32]byte
	rand.Read(scalar[:])
	curve25519.X25519(scalar[:], curve25519.Basepoint)
	if c, err := ecdh.P256().GenerateKey(rand.Reader); err == nil {
		c.ECDH(c.PublicKey())
	}
}

func (s *Server) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) user(name string) (User, bool) {
	for _, u := range s.Users {
		if u.Name == name {
			return u, true
		}
	}
	return User{}, false
}

// passwordOK reports whether name is one of users, with a password, and
// password is it.
func passwordOK(users []User, name, password string) bool {
	for _, u := range users {
		if u.Name == name && u.PasswordHash != "" {
			ok, _ := CheckPassword(u.PasswordHash, password)
			return ok
		}
	}
	return false
}

func (s *Server) config() *ssh.ServerConfig {
	cfg := &ssh.ServerConfig{
		PasswordCallback: func(md ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
			if passwordOK(s.Users, md.User(), string(pw)) {
				return nil, nil
			}
			return nil, fmt.Errorf("password rejected for %q", md.User())
		},
		PublicKeyCallback: func(md ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
			if _, ok := s.user(md.User()); ok && s.authorizedKey(md.User(), key) {
				return nil, nil
			}
			return nil, fmt.Errorf("key rejected for %q", md.User())
		},
	}
	for _, k := range s.HostKeys {
		cfg.AddHostKey(k)
	}
	return cfg
}

// authorizedKey reports whether key is listed in the user's
// ~/.ssh/authorized_keys.
func (s *Server) authorizedKey(name string, key ssh.PublicKey) bool {
	u, err := s.lookup(name)
	if err != nil {
		return false
	}
	raw, err := os.ReadFile(filepath.Join(u.HomeDir, ".ssh", "authorized_keys"))
	if err != nil {
		return false
	}
	want := key.Marshal()
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		k, _, _, _, err := ssh.ParseAuthorizedKey(sc.Bytes())
		if err == nil && bytes.Equal(k.Marshal(), want) {
			return true
		}
	}
	return false
}

// Serve accepts connections on ln until ctx is cancelled or ln fails. It
// closes ln and waits for the open connections' goroutines only as far as
// closing them.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	if len(s.HostKeys) == 0 {
		return errors.New("agent: ssh server has no host key")
	}
	cfg := s.config()
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	stop := context.AfterFunc(ctx, func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for c := range conns {
			c.Close()
		}
	})
	defer stop()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("agent: accept: %w", err)
		}
		mu.Lock()
		conns[c] = true
		mu.Unlock()
		go func() {
			defer func() {
				mu.Lock()
				delete(conns, c)
				mu.Unlock()
				c.Close()
			}()
			s.handleConn(c, cfg)
		}()
	}
}

func (s *Server) handleConn(c net.Conn, cfg *ssh.ServerConfig) {
	sc, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		s.log().Debug("ssh handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		return
	}
	defer sc.Close()
	s.log().Info("ssh login", "user", sc.User(), "remote", sc.RemoteAddr().String())
	go ssh.DiscardRequests(reqs)
	uu, err := s.lookup(sc.User())
	if err != nil {
		s.log().Warn("ssh: no account", "user", sc.User(), "err", err)
		return
	}
	u := newAccount(uu)
	u.env = append(u.env, "SSH_CONNECTION="+connString(sc))
	var open atomic.Int32 // sessions of this connection
	for nc := range chans {
		if nc.ChannelType() != "session" {
			nc.Reject(ssh.UnknownChannelType, "only session channels are supported")
			continue
		}
		if open.Load() >= MaxSessions {
			nc.Reject(ssh.ResourceShortage, fmt.Sprintf("too many sessions on this connection (at most %d at once)", MaxSessions))
			continue
		}
		ch, creqs, err := nc.Accept()
		if err != nil {
			continue
		}
		open.Add(1)
		sess := &session{srv: s, acct: u, ch: ch}
		go func() {
			defer open.Add(-1)
			sess.serve(creqs)
		}()
	}
}

func connString(sc *ssh.ServerConn) string {
	host := func(a net.Addr) string {
		h, p, err := net.SplitHostPort(a.String())
		if err != nil {
			return a.String() + " 0"
		}
		return h + " " + p
	}
	return host(sc.RemoteAddr()) + " " + host(sc.LocalAddr())
}

// account is a logged-in user's identity for starting processes.
type account struct {
	name     string
	uid, gid uint32
	groups   []uint32
	home     string
	shell    string
	env      []string
}

func lookupAccount(name string) (*account, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, err
	}
	return newAccount(u), nil
}

func newAccount(u *user.User) *account {
	name := u.Username
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	gid, _ := strconv.ParseUint(u.Gid, 10, 32)
	a := &account{name: name, uid: uint32(uid), gid: uint32(gid), home: u.HomeDir, shell: loginShell(name)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				a.groups = append(a.groups, uint32(n))
			}
		}
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	a.env = []string{"HOME=" + a.home, "USER=" + name, "LOGNAME=" + name, "SHELL=" + a.shell, "PATH=" + path}
	return a
}

// loginShell reads the user's shell from /etc/passwd (os/user does not
// expose it); /bin/sh when unknown.
func loginShell(name string) string {
	raw, err := os.ReadFile("/etc/passwd")
	if err == nil {
		sc := bufio.NewScanner(bytes.NewReader(raw))
		for sc.Scan() {
			f := bytes.Split(sc.Bytes(), []byte(":"))
			if len(f) == 7 && string(f[0]) == name && len(f[6]) > 0 {
				return string(f[6])
			}
		}
	}
	return "/bin/sh"
}
