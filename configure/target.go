package configure

import (
	"fmt"
	"log/slog"
	"net"
	"strconv"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/endpointkit/endpointkit/vmimage"
)

// Secret is a password. It prints as "REDACTED" through fmt and slog, so
// a Target can be logged or formatted without leaking it; Reveal returns
// the value for the code that must send it.
type Secret string

// String returns "REDACTED" (or "" for an empty secret).
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return "REDACTED"
}

// GoString is String, for %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue keeps the secret out of slog records.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText keeps the secret out of JSON and YAML encodings.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Reveal returns the secret itself.
func (s Secret) Reveal() string { return string(s) }

// HostKeyPolicy says how a target's SSH host key is verified. With none of
// the fields set, connecting fails with [ErrNoHostKeyPolicy]: keys are
// verified by default. Pinned keys and a known_hosts file may be combined
// (a key accepted by either is accepted).
type HostKeyPolicy struct {
	// Pinned are the keys the endpoint's image was built with
	// (vmimage.Manifest.HostKeys). Fingerprint is required; PublicKey,
	// when present, lets ansible verify without an extra handshake.
	Pinned []vmimage.HostKey
	// KnownHostsFile is an OpenSSH known_hosts file.
	KnownHostsFile string
	// InsecureIgnore accepts any host key. Use only for throw-away
	// endpoints on a trusted network; it is never the default.
	InsecureIgnore bool
}

func (p HostKeyPolicy) empty() bool {
	return len(p.Pinned) == 0 && p.KnownHostsFile == "" && !p.InsecureIgnore
}

// Target is one endpoint to configure: how to reach it and what each
// stage does to it.
type Target struct {
	Name    string // endpoint name, used in every error and log record
	Address string // host name or IP address
	// Port is the SSH port (default 22); NetconfPort the NETCONF-over-SSH
	// port (default 830).
	Port        int
	NetconfPort int

	User     string
	Password Secret
	// KeyFile is an unencrypted private key (OpenSSH or PEM); tried
	// before the password.
	KeyFile string

	HostKeys HostKeyPolicy

	// LessonDir is the lesson directory (relative copies start there).
	LessonDir string
	// Stages is the endpoint's configuration per stage, indexed by stage.
	Stages []endpoint.StageConfig
	// Replace asks NETCONF and NAPALM configurators to replace the
	// configuration (edit-config default-operation replace; Junos
	// load-configuration override) instead of merging into it.
	Replace bool
}

// SSHAddr is host:port of the SSH service.
func (t Target) SSHAddr() string { return net.JoinHostPort(t.Address, strconv.Itoa(t.sshPort())) }

// NetconfAddr is host:port of the NETCONF service.
func (t Target) NetconfAddr() string {
	p := t.NetconfPort
	if p == 0 {
		p = 830
	}
	return net.JoinHostPort(t.Address, strconv.Itoa(p))
}

func (t Target) sshPort() int {
	if t.Port == 0 {
		return 22
	}
	return t.Port
}

// LogValue describes the target without its credentials.
func (t Target) LogValue() slog.Value {
	return slog.GroupValue(slog.String("name", t.Name), slog.String("addr", t.SSHAddr()), slog.String("user", t.User))
}

// StageConfig returns the target's configuration for stage. A target with
// no stages at all has nothing to configure (MethodNone); asking for a
// stage beyond the target's list is an error.
func (t Target) StageConfig(stage int) (endpoint.StageConfig, error) {
	if len(t.Stages) == 0 {
		return endpoint.StageConfig{Stage: stage}, nil
	}
	if stage < 0 || stage >= len(t.Stages) {
		return endpoint.StageConfig{}, fmt.Errorf("%w: stage %d does not exist (the endpoint has stages 0..%d): %w", ErrBadConfig, stage, len(t.Stages)-1, lessonmeta.ErrNoStage)
	}
	sc := t.Stages[stage]
	sc.Stage = stage
	return sc, nil
}

// Access says where a launched endpoint answers and how to trust it.
type Access struct {
	Address     string
	SSHPort     int // default 22
	NetconfPort int // default 830
	// HostKeys are the keys of the endpoint's image
	// (vmimage.Manifest.HostKeys).
	HostKeys       []vmimage.HostKey
	KnownHostsFile string
	InsecureIgnore bool
}

// TargetFor builds the Target of a launched endpoint. The configuration
// account is the image's configUser/configPassword, or its SSH user when
// those are empty, as Antidote did.
func TargetFor(ep endpoint.Endpoint, lessonDir string, a Access) Target {
	user, pw := ep.Credentials.ConfigUser, ep.Credentials.ConfigPassword
	if user == "" {
		user, pw = ep.Credentials.SSHUser, ep.Credentials.SSHPassword
	}
	return Target{
		Name:        ep.Name,
		Address:     a.Address,
		Port:        a.SSHPort,
		NetconfPort: a.NetconfPort,
		User:        user,
		Password:    Secret(pw),
		HostKeys:    HostKeyPolicy{Pinned: a.HostKeys, KnownHostsFile: a.KnownHostsFile, InsecureIgnore: a.InsecureIgnore},
		LessonDir:   lessonDir,
		Stages:      ep.Stages,
	}
}
