package wiring

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"

	"github.com/endpointkit/endpointkit/internal/nsutil"
	"github.com/google/renameio/v2"
)

// StateFile is the name of the state file inside an instance's state dir.
const StateFile = "wiring.json"

// stateVersion is bumped when State changes incompatibly.
const stateVersion = 1

// State records what an Apply created, written before each kind of resource
// is created, so Teardown can remove everything from it alone.
type State struct {
	Version  int    `json:"version"`
	Instance string `json:"instance"`
	Host     string `json:"host,omitempty"`
	// HostNetNS is the namespace standing in for the host ("" = the host).
	HostNetNS string `json:"hostNetns,omitempty"`
	// HostLink holds MgmtSubnet's first address (Gateway); the host reaches
	// the management bridge in the fabric namespace through it.
	HostLink   string       `json:"hostLink"`
	MgmtSubnet netip.Prefix `json:"mgmtSubnet,omitzero"`
	Gateway    netip.Addr   `json:"gateway,omitzero"`
	// Namespaces is every namespace this instance may have created
	// (recorded before creation); HostLinkMade says HostLink may exist.
	Namespaces   []string `json:"namespaces"`
	HostLinkMade bool     `json:"hostLinkMade"`
	// NFTable is set once the table may exist.
	NFTable   string              `json:"nftTable,omitempty"`
	Endpoints []EndpointNamespace `json:"endpoints"`
	Published []PublishedPort     `json:"published,omitempty"`
	Complete  bool                `json:"complete"`
	Dir       string              `json:"-"`
}

// EndpointNamespace is one endpoint's namespace and how to reach it.
type EndpointNamespace struct {
	Name      string `json:"name"`
	Namespace string `json:"namespace"`
	// MgmtAddress is the endpoint's management address (on eth0 unless the
	// runtime was told to leave it to a guest).
	MgmtAddress netip.Prefix `json:"mgmtAddress"`
	Interfaces  []string     `json:"interfaces"`
}

// PublishedPort is one DNAT rule: connections to any of the host's own
// addresses (except loopback) on HostPort go to the endpoint's Port.
type PublishedPort struct {
	Endpoint string         `json:"endpoint"`
	Proto    string         `json:"proto"`
	Port     int            `json:"port"`
	HostPort int            `json:"hostPort"`
	Target   netip.AddrPort `json:"target"`
}

// Endpoint returns the state of the named endpoint.
func (s *State) Endpoint(name string) (EndpointNamespace, bool) {
	for _, e := range s.Endpoints {
		if e.Name == name {
			return e, true
		}
	}
	return EndpointNamespace{}, false
}

// Start starts cmd inside the named endpoint's namespace (cmd.Start on a
// thread switched into it; the child keeps the namespace, the caller's
// goroutines do not). Wait for it as usual.
func (s *State) Start(endpoint string, cmd *exec.Cmd) error {
	e, ok := s.Endpoint(endpoint)
	if !ok {
		return fmt.Errorf("wiring: no endpoint %q in instance %s", endpoint, s.Instance)
	}
	if err := nsutil.Do(e.Namespace, cmd.Start); err != nil {
		return &EndpointError{Endpoint: endpoint, Namespace: e.Namespace, Err: err}
	}
	return nil
}

// LoadState reads the state file in dir. A missing file wraps
// os.ErrNotExist; anything unreadable, or naming a resource outside the
// instance's names, wraps ErrBadState.
func LoadState(dir string) (*State, error) {
	path := filepath.Join(dir, StateFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("wiring: %w", err)
	}
	s, err := parseState(raw)
	if err != nil {
		return nil, fmt.Errorf("wiring: %s: %w", path, err)
	}
	s.Dir = dir
	return s, nil
}

// parseState decodes and checks a state file. Teardown deletes what a state
// file lists, so every name must be one this package derives for the
// instance: a damaged or foreign file cannot delete anyone else's resources.
func parseState(raw []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(raw, &s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	if s.Version != stateVersion {
		return nil, fmt.Errorf("%w: version %d, want %d", ErrBadState, s.Version, stateVersion)
	}
	if err := ValidInstance(s.Instance); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadState, err)
	}
	n := newNames(s.Instance)
	if s.HostLink != n.hostLink() {
		return nil, fmt.Errorf("%w: host link %q is not instance %q's", ErrBadState, s.HostLink, s.Instance)
	}
	if s.NFTable != "" && s.NFTable != n.nftTable() {
		return nil, fmt.Errorf("%w: nftables table %q is not instance %q's", ErrBadState, s.NFTable, s.Instance)
	}
	for _, ns := range s.Namespaces {
		if !n.ownsNamespace(ns) {
			return nil, fmt.Errorf("%w: namespace %q is not instance %q's", ErrBadState, ns, s.Instance)
		}
	}
	if s.HostNetNS != "" && (strings.ContainsRune(s.HostNetNS, '/') || s.HostNetNS == "." || s.HostNetNS == "..") {
		return nil, fmt.Errorf("%w: host namespace %q", ErrBadState, s.HostNetNS)
	}
	return &s, nil
}

// save writes the state file atomically (write to a temporary file, fsync,
// rename), so a crash leaves the previous or the new record, never half.
func (s *State) save() error {
	raw, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("wiring: encode state: %w", err)
	}
	if err := os.MkdirAll(s.Dir, 0o755); err != nil {
		return fmt.Errorf("wiring: state dir: %w", err)
	}
	if err := renameio.WriteFile(filepath.Join(s.Dir, StateFile), raw, 0o644); err != nil {
		return fmt.Errorf("wiring: write state: %w", err)
	}
	return nil
}

// record adds namespaces to the state (keeping the list sorted and unique)
// and saves it.
func (s *State) record(namespaces []string) error {
	all := append(slices.Clone(s.Namespaces), namespaces...)
	slices.Sort(all)
	s.Namespaces = slices.Compact(all)
	return s.save()
}

// forget removes a namespace that turned out to belong to someone else from
// the state and saves it.
func (s *State) forget(ns string) error {
	s.Namespaces = slices.DeleteFunc(s.Namespaces, func(x string) bool { return x == ns })
	return s.save()
}

// removeStateFile deletes the state file and, if then empty, its dir.
func removeStateFile(dir string) error {
	if err := os.Remove(filepath.Join(dir, StateFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("wiring: %w", err)
	}
	_ = os.Remove(dir) // fails while other packages keep files there
	return nil
}
