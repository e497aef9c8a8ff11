package kuberun

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
)

// Probing the guest's SSH through a port forward from the moment the
// endpoint container runs: a new attempt every sshRetry, up to sshInFlight
// at once. QEMU's user networking accepts a connection and then holds it
// while its SYN to a booting guest goes unanswered (retried after seconds),
// so one attempt at a time would notice the guest late; each attempt
// waits bannerTimeout(n) — short while the guest boots, longer later, for
// a guest slow to answer under load. Once the pod is Ready (its readiness
// probe saw the guest answer inside the pod) SSH must answer through the
// forward within sshAfterReady.
const (
	sshRetry      = 500 * time.Millisecond
	sshInFlight   = 4
	sshAfterReady = 10 * time.Second
)

// bannerTimeout is how long the n-th attempt (from 0) waits for a banner:
// 1 s, growing by 0.5 s an attempt, at most 15 s.
func bannerTimeout(n int) time.Duration {
	return min(time.Second+time.Duration(n)*500*time.Millisecond, 15*time.Second)
}

// Ready waits until the guest's SSH server answers through a port forward
// from this machine — the path configuration and `lesson ssh` take. It
// probes from the moment the endpoint container runs rather than waiting
// for the pod's Ready condition (the readiness probe, `endpoint health`,
// runs every few seconds and its verdict reaches the API server later
// still), while following the pod: a pod that fails, a launcher that
// exits, an image that cannot be pulled or a sandbox that cannot be made
// is an error saying so, as is a Ready pod whose SSH does not answer
// through the forward. For a guest whose host keys the launcher learns
// from its console, Ready also waits for the pod's Ready condition: the
// launcher is ready only once it has them, and nothing may connect before
// they can be pinned.
func (r *Runtime) Ready(ctx context.Context, ep endpointkit.RunningEndpoint) error {
	ns, name := splitPod(ep.Pod)
	if name == "" {
		return fmt.Errorf("endpoint %s has no pod (not placed)", ep.Name)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the probe and its forward
	r.mu.Lock()
	learns := r.learnsKeys[ep.Pod]
	r.mu.Unlock()
	p := &sshProbe{r: r, ep: ep, answered: make(chan struct{}), learnsKeys: learns}
	pods := r.cs.CoreV1().Pods(ns)
	sel := fields.OneTermEqualSelector("metadata.name", name).String()
	for {
		list, err := pods.List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return forbidden(err)
		}
		if len(list.Items) == 0 {
			return fmt.Errorf("pod %s is gone", ep.Pod)
		}
		if done, err := p.follow(ctx, &list.Items[0]); done || err != nil {
			return err
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return forbidden(err)
		}
		// Sandbox failures show only as events, and a Ready pod's SSH has
		// a deadline: look now and then.
		tick := time.NewTicker(time.Second)
		done, err := p.watch(ctx, w, tick.C, &list.Items[0])
		tick.Stop()
		w.Stop()
		if done || err != nil {
			return err
		}
	}
}

// sshProbe is one Ready's view of an endpoint: the pod as last seen and
// the SSH probe started once its container runs.
type sshProbe struct {
	r        *Runtime
	ep       endpointkit.RunningEndpoint
	started  bool
	readyAt  time.Time     // when the pod was first seen Ready
	answered chan struct{} // closed when SSH answered through a forward
	// learnsKeys: done needs the pod Ready too (see Ready).
	learnsKeys bool

	mu   sync.Mutex
	last error // the probe's last failure
}

// watch follows pod events until SSH answers (done), the pod fails, or
// the watch ends (false, nil: list again).
func (p *sshProbe) watch(ctx context.Context, w watch.Interface, tick <-chan time.Time, last *corev1.Pod) (bool, error) {
	answered := p.answered
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-answered:
			answered = nil // closed: once is enough; the pod's events go on
			if done, err := p.follow(ctx, last); done || err != nil {
				return done, err
			}
		case <-tick:
			if done, err := p.follow(ctx, last); done || err != nil {
				return done, err
			}
		case ev, ok := <-w.ResultChan():
			if !ok {
				return false, nil
			}
			switch ev.Type {
			case watch.Deleted:
				return false, fmt.Errorf("pod %s/%s was deleted", last.Namespace, last.Name)
			case watch.Error:
				return false, nil
			}
			pod, ok := ev.Object.(*corev1.Pod)
			if !ok {
				continue
			}
			last = pod
			if done, err := p.follow(ctx, pod); done || err != nil {
				return done, err
			}
		}
	}
}

// follow takes the pod as last seen: an error when it will never be
// ready, the SSH probe started once its endpoint container runs, done once
// SSH has answered.
func (p *sshProbe) follow(ctx context.Context, pod *corev1.Pod) (bool, error) {
	ready, err := p.r.podReady(ctx, pod)
	if err != nil {
		return false, err
	}
	select {
	case <-p.answered:
		if ready || !p.learnsKeys {
			return true, nil
		}
	default:
	}
	if !p.started && (ready || running(pod)) {
		p.started = true
		go p.run(ctx)
	}
	if ready && p.readyAt.IsZero() {
		p.readyAt = time.Now()
	}
	if !p.readyAt.IsZero() && time.Since(p.readyAt) > sshAfterReady {
		p.mu.Lock()
		last := p.last
		p.mu.Unlock()
		return false, fmt.Errorf("the pod is ready but SSH (guest port %d) does not answer through a port forward: %w", p.port(), last)
	}
	return false, nil
}

// running says whether the pod's endpoint container has started.
func running(pod *corev1.Pod) bool {
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name == container && cs.State.Running != nil {
			return true
		}
	}
	return false
}

// port is the endpoint's guest SSH port.
func (p *sshProbe) port() int {
	p.r.mu.Lock()
	defer p.r.mu.Unlock()
	if port, ok := p.r.sshPorts[p.ep.Pod]; ok {
		return port
	}
	return 22
}

// run reads the guest's SSH banner through a port forward, starting an
// attempt every sshRetry (sshInFlight at most at once), until one answers
// (answered is closed) or ctx ends.
func (p *sshProbe) run(ctx context.Context) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	port := p.port()
	slots := make(chan struct{}, sshInFlight)
	var once sync.Once
	tick := time.NewTicker(sshRetry)
	defer tick.Stop()
	for n := 0; ; {
		select {
		case slots <- struct{}{}:
			go func(n int) {
				defer func() { <-slots }()
				ap, err := p.r.Reach(ctx, p.ep, port)
				if err == nil {
					actx, acancel := context.WithTimeout(ctx, bannerTimeout(n))
					err = banner(actx, ap)
					acancel()
				}
				if err == nil {
					once.Do(func() { close(p.answered) })
					cancel()
					return
				}
				if ctx.Err() == nil {
					p.mu.Lock()
					p.last = err
					p.mu.Unlock()
				}
			}(n)
			n++
		default: // every slot waits on an attempt
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// banner reads an SSH server's identification line at addr.
func banner(ctx context.Context, addr netip.AddrPort) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no SSH banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("not an SSH server: %q", line)
	}
	return nil
}

// podReady says whether the pod is ready, or why it never will be.
func (r *Runtime) podReady(ctx context.Context, pod *corev1.Pod) (bool, error) {
	switch pod.Status.Phase {
	case corev1.PodFailed, corev1.PodSucceeded:
		return false, fmt.Errorf("pod %s/%s ended (%s): %s %s", pod.Namespace, pod.Name, pod.Status.Phase, pod.Status.Reason, pod.Status.Message)
	}
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady && c.Status == corev1.ConditionTrue {
			return true, nil
		}
	}
	statuses := append(append([]corev1.ContainerStatus{}, pod.Status.InitContainerStatuses...), pod.Status.ContainerStatuses...)
	for _, cs := range statuses {
		if w := cs.State.Waiting; w != nil {
			switch w.Reason {
			case "ErrImagePull", "ImagePullBackOff", "InvalidImageName", "CreateContainerError", "CreateContainerConfigError", "RunContainerError":
				return false, fmt.Errorf("container %s: %s: %s", cs.Name, w.Reason, w.Message)
			}
		}
		if t := cs.State.Terminated; t != nil && (cs.Name == container || t.ExitCode != 0) {
			return false, fmt.Errorf("container %s exited with status %d (%s) before the guest was ready", cs.Name, t.ExitCode, t.Reason)
		}
		if cs.RestartCount > 0 {
			t := cs.LastTerminationState.Terminated
			if t != nil {
				return false, fmt.Errorf("container %s exited with status %d (%s) before the guest was ready", cs.Name, t.ExitCode, t.Reason)
			}
			return false, fmt.Errorf("container %s restarted before the guest was ready", cs.Name)
		}
	}
	if running(pod) {
		return false, nil // the sandbox is made
	}
	events, err := r.events(ctx, pod.Namespace, pod.Name)
	if err != nil {
		return false, nil // events are a hint; the watch goes on
	}
	n := 0
	for _, e := range events {
		if e.Reason == "FailedCreatePodSandBox" {
			n += int(max(e.Count, 1))
			if n >= sandboxFailures {
				return false, fmt.Errorf("the pod's sandbox cannot be made: %s", e.Message)
			}
		}
	}
	return false, nil
}

// events are a pod's events, oldest first.
func (r *Runtime) events(ctx context.Context, ns, pod string) ([]corev1.Event, error) {
	list, err := r.cs.CoreV1().Events(ns).List(ctx, metav1.ListOptions{
		FieldSelector: fields.AndSelectors(fields.OneTermEqualSelector("involvedObject.name", pod),
			fields.OneTermEqualSelector("involvedObject.kind", "Pod")).String()})
	if err != nil {
		return nil, err
	}
	evs := list.Items
	sort.SliceStable(evs, func(i, j int) bool { return eventTime(evs[i]).Before(eventTime(evs[j])) })
	return evs, nil
}

func eventTime(e corev1.Event) time.Time {
	switch {
	case !e.LastTimestamp.IsZero():
		return e.LastTimestamp.Time
	case !e.EventTime.IsZero():
		return e.EventTime.Time
	}
	return e.CreationTimestamp.Time
}
