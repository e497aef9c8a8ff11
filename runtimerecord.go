package endpointkit

import (
	"context"
	"errors"
	"fmt"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
)

// RuntimeRecord says, in an instance's record, which runtime placed it,
// so that later commands (status, configure, ssh, console, logs, down)
// reach it without being told again. A nil record is the local runtime.
type RuntimeRecord struct {
	// Kind names the runtime ("kubernetes").
	Kind string `json:"kind"`
	// Kubeconfig and Context select the cluster ("" Kubeconfig: the
	// default loading rules, $KUBECONFIG then ~/.kube/config); Namespace
	// is the instance's namespace there.
	Kubeconfig string `json:"kubeconfig,omitempty"`
	Context    string `json:"context,omitempty"`
	Namespace  string `json:"namespace,omitempty"`
}

// Recorded is implemented by a [Runtime] other than the local one: Up
// stores what RuntimeRecord returns in the instance record, and Open and
// Teardown rebuild the runtime from it with Options.RuntimeFor.
type Recorded interface {
	RuntimeRecord() RuntimeRecord
}

// Checker is implemented by a [Runtime] that can tell, before anything is
// built, pushed or created, whether it will be able to place the instance
// (a cluster reachable, the permissions granted, no namespace of that
// name unless replace). Up calls Check right after validating the lesson.
type Checker interface {
	Check(ctx context.Context, instance string, replace bool) error
}

// Accessor is implemented by a [Runtime] whose Reach addresses last only
// as long as the process that asked (port forwards through a cluster's API
// server): Access says how a person reaches a presentation instead (for
// example `lesson ssh ENDPOINT`), and Up pins no host keys by address in
// known_hosts for it.
type Accessor interface {
	Access(instance string, ep RunningEndpoint, p Presentation) string
}

// HostKeyer is implemented by a [Runtime] whose launchers keep their
// state elsewhere than this machine (a pod): HostKeys returns the SSH host
// keys to pin for the endpoint's guest of image manifest m — the
// manifest's, the per-instance identity's (vmimage.IdentityFWCfg) that the
// runtime made and handed to the launcher, or those the launcher learned
// from the guest's console, read over an authenticated channel (none
// before its first boot). Configuration, DialSSH and known_hosts pin what
// it returns. Without it the keys are read from the launcher's state
// directory on this machine (qemulaunch.InstanceHostKeys).
type HostKeyer interface {
	HostKeys(ctx context.Context, ep RunningEndpoint, m vmimage.Manifest) ([]vmimage.HostKey, error)
}

// hostKeys are the SSH host keys to pin for the endpoint (see HostKeyer).
func (i *Instance) hostKeys(ctx context.Context, rec RunningEndpoint, m vmimage.Manifest) ([]vmimage.HostKey, error) {
	var keys []vmimage.HostKey
	var err error
	if hk, ok := i.runtime().(HostKeyer); ok {
		keys, err = hk.HostKeys(ctx, rec, m)
	} else {
		keys, err = qemulaunch.InstanceHostKeys(rec.StateDir, rec.Name, m)
	}
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: host keys: %w", rec.Name, err)
	}
	return keys, nil
}

// ErrRuntime: the instance was placed by a runtime this process was not
// given and cannot rebuild from the record (Options.RuntimeFor).
var ErrRuntime = errors.New("instance placed by another runtime")

// runtimeFor is the runtime of an instance whose record says rec: the one
// Options.Runtime gives, else the one Options.RuntimeFor makes of rec,
// else the local one when rec is nil.
func (o *Options) runtimeFor(name string, rec *RuntimeRecord) (Runtime, error) {
	if o.Runtime != nil || rec == nil {
		return o.runtime(), nil
	}
	if o.RuntimeFor == nil {
		return nil, fmt.Errorf("instance %s: %w: %s (kubeconfig %q, context %q); this program cannot reach it", name, ErrRuntime, rec.Kind, rec.Kubeconfig, rec.Context)
	}
	rt, err := o.RuntimeFor(*rec)
	if err != nil {
		return nil, fmt.Errorf("instance %s: %s runtime: %w", name, rec.Kind, err)
	}
	return rt, nil
}
