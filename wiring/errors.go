package wiring

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error this package returns that a user can cause
// wraps one of these (test with errors.Is) and names the endpoint or link.
var (
	// ErrInvalidModel: the endpoint model cannot be wired as given.
	ErrInvalidModel = errors.New("invalid endpoint model")
	// ErrInvalidOptions: plan or runtime options are wrong.
	ErrInvalidOptions = errors.New("invalid wiring options")
	// ErrNotPermitted: the process lacks root (CAP_NET_ADMIN and
	// CAP_SYS_ADMIN) to create namespaces and links.
	ErrNotPermitted = errors.New("not permitted: run as root")
	// ErrNameCollision: a namespace, link or nftables table the plan needs
	// already exists and does not belong to this instance.
	ErrNameCollision = errors.New("name already in use")
	// ErrPoolExhausted: no free /24 is left in the management address pool.
	ErrPoolExhausted = errors.New("management address pool exhausted")
	// ErrNamespaceGone: an endpoint namespace disappeared while applying.
	ErrNamespaceGone = errors.New("namespace deleted while applying")
	// ErrBadState: a state file is unreadable or names resources that do
	// not belong to its instance.
	ErrBadState = errors.New("bad wiring state file")
)

// EndpointError is a failure while wiring one endpoint.
type EndpointError struct {
	Endpoint  string
	Namespace string
	Err       error
}

func (e *EndpointError) Error() string {
	return fmt.Sprintf("wiring: endpoint %s (namespace %s): %v", e.Endpoint, e.Namespace, e.Err)
}

func (e *EndpointError) Unwrap() error { return e.Err }

// LinkError is a failure while wiring one link.
type LinkError struct {
	Link int    // index in the plan's links
	Desc string // "a.ethI ↔ b.ethJ"
	Err  error
}

func (e *LinkError) Error() string {
	return fmt.Sprintf("wiring: link %d (%s): %v", e.Link, e.Desc, e.Err)
}

func (e *LinkError) Unwrap() error { return e.Err }
