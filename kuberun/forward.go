package kuberun

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"time"

	"github.com/endpointkit/endpointkit"
	"k8s.io/client-go/tools/portforward"
	"k8s.io/client-go/transport/spdy"
)

// forward is one port forward to a pod, shared by every Reach of the same
// pod and port while any of their contexts lasts, and forwardLinger
// longer (the next step of an Up or a Configure reaches the same port).
type forward struct {
	addr   netip.AddrPort
	refs   int
	stop   chan struct{}
	done   chan struct{} // closed when the forward has ended
	linger *time.Timer
}

// forwardLinger is how long an unused forward stays for the next Reach.
const forwardLinger = 20 * time.Second

// Reach forwards a port of 127.0.0.1 to the guest port through the API
// server (client-go port-forward to the pod, whose launcher listens on its
// loopback too). Reaches of one pod and port share a forward, which ends
// when the last of their contexts does, or when its connection to the API
// server breaks (the next Reach makes a new one). An unused forward
// lingers a few seconds for the next Reach.
func (r *Runtime) Reach(ctx context.Context, ep endpointkit.RunningEndpoint, guestPort int) (netip.AddrPort, error) {
	if ep.Pod == "" {
		return netip.AddrPort{}, fmt.Errorf("endpoint %s has no pod (not placed)", ep.Name)
	}
	podPort := guestPort
	for _, p := range ep.Ports {
		if p.Guest == guestPort && p.Host > 0 {
			podPort = p.Host
		}
	}
	key := ep.Pod + ":" + strconv.Itoa(podPort)
	r.mu.Lock()
	f, ok := r.forwards[key]
	if ok {
		select {
		case <-f.done:
			delete(r.forwards, key)
			ok = false
		default:
		}
	}
	if !ok {
		r.mu.Unlock()
		nf, err := r.startForward(ctx, ep, podPort)
		if err != nil {
			return netip.AddrPort{}, err
		}
		r.mu.Lock()
		if f, ok = r.forwards[key]; ok { // another Reach won the race
			close(nf.stop)
		} else {
			f = nf
			r.forwards[key] = f
		}
	}
	f.refs++
	if f.linger != nil {
		f.linger.Stop()
		f.linger = nil
	}
	r.mu.Unlock()
	context.AfterFunc(ctx, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if f.refs--; f.refs > 0 {
			return
		}
		f.linger = time.AfterFunc(forwardLinger, func() {
			r.mu.Lock()
			defer r.mu.Unlock()
			if f.refs == 0 && f.linger != nil {
				close(f.stop)
				if r.forwards[key] == f {
					delete(r.forwards, key)
				}
			}
		})
	})
	return f.addr, nil
}

// forwardTimeout bounds the setting up of one port forward.
const forwardTimeout = time.Minute

// startForward sets up a port forward to the pod's port.
func (r *Runtime) startForward(ctx context.Context, ep endpointkit.RunningEndpoint, podPort int) (*forward, error) {
	ns, name := splitPod(ep.Pod)
	transport, upgrader, err := spdy.RoundTripperFor(r.cfg)
	if err != nil {
		return nil, err
	}
	url := r.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("portforward").URL()
	dialer := spdy.NewDialer(upgrader, &http.Client{Transport: transport}, http.MethodPost, url)
	f := &forward{stop: make(chan struct{}), done: make(chan struct{})}
	ready := make(chan struct{})
	fw, err := portforward.NewOnAddresses(dialer, []string{"127.0.0.1"}, []string{"0:" + strconv.Itoa(podPort)}, f.stop, ready, io.Discard, io.Discard)
	if err != nil {
		return nil, err
	}
	errc := make(chan error, 1)
	go func() {
		err := fw.ForwardPorts()
		close(f.done)
		errc <- err
	}()
	fail := func(err error) (*forward, error) {
		return nil, fmt.Errorf("endpoint %s: port forward to %s port %d: %w", ep.Name, ep.Pod, podPort, err)
	}
	select {
	case <-ready:
	case err := <-errc:
		return fail(forbidden(err))
	case <-ctx.Done():
		close(f.stop)
		return nil, ctx.Err()
	case <-time.After(forwardTimeout):
		close(f.stop)
		return fail(fmt.Errorf("not set up after %v", forwardTimeout))
	}
	ports, err := fw.GetPorts()
	if err != nil || len(ports) == 0 {
		close(f.stop)
		return fail(fmt.Errorf("no local port (%v)", err))
	}
	f.addr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{127, 0, 0, 1}), ports[0].Local)
	return f, nil
}
