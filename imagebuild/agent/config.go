package agent

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
)

// ConfigFile is where imagebuild writes the agent's [Config] in the image.
const ConfigFile = "/etc/endpointkit/agent.json"

// ReadyMarker starts the line the agent prints on the console once the
// endpoint is ready (SSH listening, DHCP done). The rest of the line is
// "hostname=NAME addr=ADDR". ReadyRegex matches it.
const (
	ReadyMarker = "endpointkit: ready"
	ReadyRegex  = `endpointkit: ready\b`
)

// Kernel command line parameters read by the agent: the guest's name, and
// a flag that prints boot-step timings on the console.
const (
	HostnameParam = "endpointkit.hostname"
	DebugParam    = "endpointkit.debug"
)

// Modes of the init process.
const (
	ModeEndpoint = "endpoint" // the tiny endpoint (default)
	ModeStage1   = "stage1"   // mount root= and switch to its /sbin/init
)

// Config is the agent's configuration, stored as JSON in the image.
type Config struct {
	// Mode is ModeEndpoint (default) or ModeStage1.
	Mode string `json:"mode,omitempty"`
	// Modules are absolute paths of kernel modules, in load order
	// (dependencies first).
	Modules []string `json:"modules,omitempty"`
	// ShareModules are loaded after Modules only when the VM has a virtio
	// 9p device (the lesson share): the 9p stack is a quarter of the
	// modules' size, and a VM without a share need not load it.
	ShareModules []string `json:"shareModules,omitempty"`
	// Hostname is used when the kernel command line has no
	// endpointkit.hostname parameter.
	Hostname string `json:"hostname,omitempty"`
	// DHCP lists the interfaces configured by DHCP (usually ["eth0"]).
	DHCP []string `json:"dhcp,omitempty"`
	// NICNames are the names the image's NIC layout gives NICs the kernel
	// would call ethN, by PCI address; the agent renames each NIC as it
	// appears (at boot or added later) and brings it up.
	NICNames []NICName `json:"nicNames,omitempty"`
	// Share9PTag is the virtio 9p mount tag mounted at Share9PPath when the
	// VM offers it.
	Share9PTag  string `json:"share9pTag,omitempty"`
	Share9PPath string `json:"share9pPath,omitempty"`
	// Sysctls are written under /proc/sys at boot (key with dots).
	Sysctls map[string]string `json:"sysctls,omitempty"`
	// SSH configures the SSH server.
	SSH SSHConfig `json:"ssh"`
}

// SSHConfig configures the SSH server.
type SSHConfig struct {
	Port     int      `json:"port"`
	HostKeys []string `json:"hostKeys"` // private key files (OpenSSH format)
	Users    []User   `json:"users"`    // who may log in
}

// NICName names the NIC at a PCI address on the root bus.
type NICName struct {
	PCI  string `json:"pci"` // as in /sys/bus/pci/devices, "0000:00:03.1"
	Name string `json:"name"`
}

// MaxSessions is how many sessions the SSH server runs at once on one
// connection, as the MaxSessions of debootstrap images' sshd: lesson
// scripts (paramiko's exec_command) open one per command without waiting
// for the previous one, which OpenSSH's default of 10 refuses.
const MaxSessions = 100

// User is an account allowed to log in over SSH. Its uid, groups, home and
// shell come from /etc/passwd and /etc/group; authorized keys from
// ~/.ssh/authorized_keys.
type User struct {
	Name string `json:"name"`
	// PasswordHash is made by [HashPassword]; empty disables password login.
	PasswordHash string `json:"passwordHash,omitempty"`
}

// LoadConfig reads a Config from path.
func LoadConfig(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var c Config
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("agent: %s: %w", path, err)
	}
	if c.Mode == "" {
		c.Mode = ModeEndpoint
	}
	return &c, nil
}

// HashPassword returns "sha256:SALT:HASH" for password with a random salt.
// The hash only keeps the password out of plain sight in the image; the
// password itself is published in image.meta.yaml anyway.
func HashPassword(password string) string {
	var salt [8]byte
	if _, err := rand.Read(salt[:]); err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return hashWithSalt(hex.EncodeToString(salt[:]), password)
}

func hashWithSalt(salt, password string) string {
	sum := sha256.Sum256([]byte(salt + ":" + password))
	return "sha256:" + salt + ":" + hex.EncodeToString(sum[:])
}

// ErrBadHash is returned by [CheckPassword] for a malformed hash.
var ErrBadHash = errors.New("agent: malformed password hash")

// CheckPassword reports whether password matches a hash made by HashPassword.
func CheckPassword(hash, password string) (bool, error) {
	parts := strings.Split(hash, ":")
	if len(parts) != 3 || parts[0] != "sha256" {
		return false, ErrBadHash
	}
	want := hashWithSalt(parts[1], password)
	return subtle.ConstantTimeCompare([]byte(want), []byte(hash)) == 1, nil
}

// ParseCmdline returns the key=value parameters of a kernel command line
// (flags without "=" map to "").
func ParseCmdline(cmdline string) map[string]string {
	out := map[string]string{}
	for _, f := range strings.Fields(cmdline) {
		k, v, _ := strings.Cut(f, "=")
		out[k] = v
	}
	return out
}
