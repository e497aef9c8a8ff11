package endpointkit

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"sync"

	"github.com/endpointkit/endpointkit/configure"
	"github.com/endpointkit/endpointkit/qemulaunch"
)

// Status refreshes each endpoint's State from what the runtime observes —
// locally its launcher process, its health and restarts files, its
// namespace — and returns the endpoints. An endpoint whose launcher is gone
// is StateDown (or StateFailed when its health says so, with the reason in
// Error); one being started again is StateRestarting; a live one keeps the
// state Up, Configure or the healer recorded (configured, config-failed,
// …), or is StateReady when its VM booted again and the stage was not yet
// applied to the new boot. Restarts and LastExit count every restart so
// far. An abandoned instance (see Abandoned) has every endpoint
// StateFailed with Error saying how to remove it. ctx bounds what the
// runtime does to look.
func (i *Instance) Status(ctx context.Context) []RunningEndpoint {
	i.reload()
	abandoned := i.notAbandoned()
	for k := range i.Endpoints {
		e := &i.Endpoints[k]
		o := i.runtime().Observe(ctx, *e)
		if r := o.Restarts + e.Replaced; r > e.Restarts {
			e.Restarts, e.LastExit = r, firstNonEmpty(o.LastExit, e.LastExit)
		}
		rebooted := e.BootID != "" && o.Boot != e.BootID
		switch {
		case abandoned != nil:
			e.State, e.Error = StateFailed, abandoned.Error()
		case o.NamespaceGone:
			e.State, e.Error = StateDown, o.Wiring
		case o.Running && o.Health == qemulaunch.HealthReady && rebooted:
			e.State, e.Error = StateReady, fmt.Sprintf("booted again; stage %d not applied to this boot yet", i.Stage)
		case o.Running && o.Health == qemulaunch.HealthReady:
			// Up, Configure or the healer recorded the rest.
		case o.Running && o.Health == qemulaunch.HealthRestarting, o.Running && rebooted && e.State != StateStarting:
			e.State, e.Error = StateRestarting, o.Detail
		case e.State == StateRestarting && !o.Running && o.Health != qemulaunch.HealthFailed,
			e.State == StateFailed && !o.Running:
			// The healer is placing it anew, or gave up: its record says so.
		case o.Running && (o.Health == "" || o.Health == qemulaunch.HealthStarting):
			e.State = StateStarting
		case o.Health == qemulaunch.HealthFailed:
			e.State, e.Error = StateFailed, o.Detail
		default:
			e.State, e.Error = StateDown, "launcher not running"
			if o.Running {
				e.Error = "VM " + o.Health
			} else if o.Health != "" {
				e.Error += "; last health: " + o.Health
			}
		}
		if o.Wiring != "" && !o.NamespaceGone && e.Error == "" {
			e.Error = o.Wiring
		}
	}
	return i.Endpoints
}

// Console attaches to the endpoint's serial console (see
// Runtime.Console); close it to detach.
func (i *Instance) Console(ctx context.Context, endpoint string) (io.ReadWriteCloser, error) {
	i.reload()
	rec, ok := i.Endpoint(endpoint)
	if !ok {
		return nil, i.noEndpoint(endpoint)
	}
	if err := i.ready(ctx, rec); err != nil {
		return nil, err
	}
	conn, err := i.runtime().Console(ctx, rec)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: console: %w (endpoint %s)", endpoint, err, i.consoleState(ctx, endpoint))
	}
	return conn, nil
}

// Logs returns the tails of the endpoint's serial console and launcher
// output (see Runtime.Logs).
func (i *Instance) Logs(ctx context.Context, endpoint string) (Logs, error) {
	i.reload()
	rec, ok := i.Endpoint(endpoint)
	if !ok {
		return Logs{}, i.noEndpoint(endpoint)
	}
	return i.runtime().Logs(ctx, rec), nil
}

// DialSSH logs in to the endpoint over SSH as its image's SSH user (the
// learner's account), at the address the runtime reaches it by (locally,
// its management address), verifying the image's pinned host keys. ctx
// also bounds how long that address stays usable.
func (i *Instance) DialSSH(ctx context.Context, endpoint string) (*configure.SSHClient, error) {
	t, err := i.sshTarget(ctx, endpoint)
	if err != nil {
		return nil, err
	}
	return configure.DialSSH(ctx, t, configure.DialOptions{})
}

// Run runs a shell command on the endpoint over SSH (see DialSSH). A
// non-zero exit is a *configure.ExitError; the result is still returned.
func (i *Instance) Run(ctx context.Context, endpoint, command string) (configure.CommandResult, error) {
	c, err := i.DialSSH(ctx, endpoint)
	if err != nil {
		return configure.CommandResult{}, err
	}
	defer c.Close()
	return c.Run(ctx, command)
}

// sshTarget is the configure.Target of an endpoint with the learner's
// credentials.
func (i *Instance) sshTarget(ctx context.Context, name string) (configure.Target, error) {
	i.reload()
	rec, ok := i.Endpoint(name)
	if !ok {
		return configure.Target{}, i.noEndpoint(name)
	}
	_, m, images, err := i.model()
	if err != nil {
		return configure.Target{}, err
	}
	ep := m.Endpoint(name)
	if ep == nil {
		return configure.Target{}, fmt.Errorf("lesson %s: no endpoint %q any more", i.Lesson, name)
	}
	if err := i.ready(ctx, rec); err != nil {
		return configure.Target{}, err
	}
	return i.learnerTarget(ctx, *ep, rec, images[rec.Image])
}

func (i *Instance) endpointNames() string {
	names := make([]string, len(i.Endpoints))
	for k, e := range i.Endpoints {
		names[k] = e.Name
	}
	return strings.Join(names, ", ")
}

// noEndpoint is the error for an endpoint the instance does not have.
func (i *Instance) noEndpoint(name string) error {
	return fmt.Errorf("instance %s: no endpoint %q (endpoints: %s)", i.Name, name, i.endpointNames())
}

// LinkCheck is the outcome of one ping across a link.
type LinkCheck struct {
	From, To  string     // endpoints
	Interface string     // From's interface on the link
	Address   netip.Addr // To's address on the link
	OK        bool
	Err       error // why it failed
}

// CheckLinks proves every link of the lesson whose addresses the lesson
// plans (connections with a subnet, as configured at stage 0 of lessons
// that follow the plan): from each end it pings the other end's address
// over SSH. It returns one check per direction, in link order; err is only
// for failures to read the lesson.
func (i *Instance) CheckLinks(ctx context.Context) ([]LinkCheck, error) {
	_, m, _, err := i.model()
	if err != nil {
		return nil, err
	}
	var checks []LinkCheck
	for _, ep := range m.Endpoints {
		for _, it := range ep.Interfaces {
			peer := m.Endpoint(it.Peer)
			if peer == nil || !it.Address.IsValid() {
				continue
			}
			for _, pi := range peer.Interfaces {
				if pi.Name == it.PeerInterface && pi.Link == it.Link && pi.Address.IsValid() {
					checks = append(checks, LinkCheck{From: ep.Name, To: peer.Name, Interface: it.Name, Address: pi.Address.Addr()})
				}
			}
		}
	}
	var wg sync.WaitGroup
	for k := range checks {
		wg.Go(func() {
			c := &checks[k]
			c.Err = i.Ping(ctx, c.From, c.Address)
			c.OK = c.Err == nil
		})
	}
	wg.Wait()
	return checks, nil
}

// Ping pings addr from the endpoint over SSH (three tries, one second
// apart, so a first ARP resolution does not fail it).
func (i *Instance) Ping(ctx context.Context, from string, addr netip.Addr) error {
	cmd := fmt.Sprintf("for n in 1 2 3; do ping -c 1 -W 1 %s && exit 0; sleep 1; done; exit 1", addr)
	if _, err := i.Run(ctx, from, cmd); err != nil {
		return fmt.Errorf("ping %s from %s: %w", addr, from, err)
	}
	return nil
}
