package kuberun

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/qemulaunch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/client-go/tools/remotecommand"
)

// container is the endpoint container's name in every pod (kubeplan).
const container = "endpoint"

// tailBytes and tailLines are how much of a launcher log or a console an
// error quotes.
const (
	tailBytes = 3000
	tailLines = 40
)

// sandboxFailures is how many failed pod sandbox creations (the CNI
// plugins failing, typically) make Ready give up rather than wait for the
// kubelet's next retry.
const sandboxFailures = 3

// forbidden wraps an API server's refusal with ErrForbidden.
func forbidden(err error) error {
	if apierrors.IsForbidden(err) {
		return fmt.Errorf("%w: %w", ErrForbidden, err)
	}
	return err
}

// Ready waits until the endpoint's pod is Ready — its readiness probe,
// `endpoint health`, says the guest answers on its management port — and
// then until the guest's SSH server answers through a port forward from
// this machine. A pod that fails, a launcher that exits, an image that
// cannot be pulled or a sandbox that cannot be made is an error saying so.
func (r *Runtime) Ready(ctx context.Context, ep endpointkit.RunningEndpoint) error {
	ns, name := splitPod(ep.Pod)
	if name == "" {
		return fmt.Errorf("endpoint %s has no pod (not placed)", ep.Name)
	}
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
		ready, err := r.podReady(ctx, &list.Items[0])
		if err != nil || ready {
			if err == nil {
				err = r.sshAnswers(ctx, ep)
			}
			return err
		}
		w, err := pods.Watch(ctx, metav1.ListOptions{FieldSelector: sel, ResourceVersion: list.ResourceVersion})
		if err != nil {
			return forbidden(err)
		}
		// Sandbox failures show only as events: look at them now and then.
		tick := time.NewTicker(3 * time.Second)
		done, err := r.watchReady(ctx, w, tick.C, &list.Items[0])
		tick.Stop()
		w.Stop()
		if done || err != nil {
			if err == nil {
				err = r.sshAnswers(ctx, ep)
			}
			return err
		}
	}
}

// watchReady follows pod events until the pod is ready, fails, or the
// watch ends (done false, nil: list again).
func (r *Runtime) watchReady(ctx context.Context, w watch.Interface, tick <-chan time.Time, last *corev1.Pod) (bool, error) {
	for {
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-tick:
			if _, err := r.podReady(ctx, last); err != nil {
				return false, err
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
			ready, err := r.podReady(ctx, pod)
			if err != nil || ready {
				return ready, err
			}
		}
	}
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

// sshAnswers waits until the guest's SSH server sends its banner through
// a port forward: the path configuration and `lesson ssh` take works.
func (r *Runtime) sshAnswers(ctx context.Context, ep endpointkit.RunningEndpoint) error {
	r.mu.Lock()
	port, ok := r.sshPorts[ep.Pod]
	r.mu.Unlock()
	if !ok {
		port = 22
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ap, err := r.Reach(fctx, ep, port)
	if err != nil {
		return err
	}
	var last error
	for range 20 {
		if last = banner(fctx, ap); last == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
	return fmt.Errorf("the pod is ready but SSH (guest port %d) does not answer through a port forward: %w", port, last)
}

// banner reads an SSH server's identification line at addr.
func banner(ctx context.Context, addr netip.AddrPort) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr.String())
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return fmt.Errorf("no SSH banner: %w", err)
	}
	if !strings.HasPrefix(line, "SSH-") {
		return fmt.Errorf("not an SSH server: %q", line)
	}
	return nil
}

// exec runs argv in the endpoint container with the given streams (stdin
// may be nil) until it ends or ctx does.
func (r *Runtime) exec(ctx context.Context, ep endpointkit.RunningEndpoint, argv []string, stdin io.Reader, stdout, stderr io.Writer) error {
	ns, name := splitPod(ep.Pod)
	if name == "" {
		return fmt.Errorf("endpoint %s has no pod (not placed)", ep.Name)
	}
	req := r.cs.CoreV1().RESTClient().Post().Resource("pods").Namespace(ns).Name(name).SubResource("exec").
		VersionedParams(&corev1.PodExecOptions{Container: container, Command: argv,
			Stdin: stdin != nil, Stdout: stdout != nil, Stderr: stderr != nil}, scheme.ParameterCodec)
	ex, err := remotecommand.NewSPDYExecutor(r.cfg, http.MethodPost, req.URL())
	if err != nil {
		return err
	}
	err = ex.StreamWithContext(ctx, remotecommand.StreamOptions{Stdin: stdin, Stdout: stdout, Stderr: stderr})
	return forbidden(err)
}

// Console attaches to the serial console by running `endpoint console`
// in the endpoint's container (the API server's exec): what the guest
// prints is read (its last lines first), what is written goes to it.
// Close detaches; a failed exec shows as the error of Read.
func (r *Runtime) Console(ctx context.Context, ep endpointkit.RunningEndpoint) (io.ReadWriteCloser, error) {
	if o := r.Observe(ctx, ep); !o.Running {
		return nil, fmt.Errorf("pod %s: the endpoint container is not running (%s)", ep.Pod, o.Detail)
	}
	ctx, cancel := context.WithCancel(ctx)
	inR, inW := io.Pipe()
	outR, outW := io.Pipe()
	go func() {
		stderr := &lockedWriter{w: &bytes.Buffer{}}
		err := r.exec(ctx, ep, []string{kubeletLauncher, "console"}, inR, outW, stderr)
		if err != nil && ctx.Err() == nil {
			err = fmt.Errorf("console of %s: %w: %s", ep.Pod, err, strings.TrimSpace(stderr.String()))
		} else {
			err = nil
		}
		inR.Close()
		outW.CloseWithError(err)
	}()
	return &console{Reader: outR, in: inW, cancel: cancel}, nil
}

// kubeletLauncher is the launcher in an endpoint container.
const kubeletLauncher = "/usr/local/bin/endpoint"

// console is an exec'd `endpoint console`.
type console struct {
	io.Reader
	in     *io.PipeWriter
	cancel context.CancelFunc
}

func (c *console) Write(p []byte) (int, error) { return c.in.Write(p) }

func (c *console) Close() error {
	c.in.Close()
	c.cancel()
	return nil
}

// Logs returns the tails of the serial console (`endpoint logs` in the
// container) and of the launcher's output (the container's log), followed
// by the pod's events.
func (r *Runtime) Logs(ctx context.Context, ep endpointkit.RunningEndpoint) endpointkit.Logs {
	ns, name := splitPod(ep.Pod)
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	var console bytes.Buffer
	r.exec(lctx, ep, []string{kubeletLauncher, "logs", "--lines", strconv.Itoa(tailLines)}, nil, &console, io.Discard)
	tail := int64(tailBytes)
	raw, err := r.cs.CoreV1().Pods(ns).GetLogs(name, &corev1.PodLogOptions{Container: container, LimitBytes: &tail}).DoRaw(lctx)
	launcher := string(raw)
	if err != nil {
		launcher = fmt.Sprintf("(no container log: %v)\n", err)
	}
	if evs, err := r.events(lctx, ns, name); err == nil && len(evs) > 0 {
		launcher += "--- events of pod " + ep.Pod + " ---\n"
		for _, e := range evs {
			launcher += fmt.Sprintf("%s %s %s: %s\n", eventTime(e).Format(time.TimeOnly), e.Type, e.Reason, strings.TrimSpace(e.Message))
		}
	}
	return endpointkit.Logs{Console: console.String(), Launcher: launcher, Where: ep.Log}
}

// WriteLog prints the console log (`endpoint logs` in the container) or
// the launcher's output (the container's log, as `kubectl logs`), whole
// or its last lines, following it on request.
func (r *Runtime) WriteLog(ctx context.Context, ep endpointkit.RunningEndpoint, w io.Writer, o endpointkit.LogOptions) error {
	ns, name := splitPod(ep.Pod)
	if o.Source == endpointkit.LogLauncher {
		po := &corev1.PodLogOptions{Container: container, Follow: o.Follow}
		if o.Lines > 0 {
			n := int64(o.Lines)
			po.TailLines = &n
		}
		rc, err := r.cs.CoreV1().Pods(ns).GetLogs(name, po).Stream(ctx)
		if err != nil {
			return fmt.Errorf("endpoint %s: launcher log: %w", ep.Name, forbidden(err))
		}
		defer rc.Close()
		_, err = io.Copy(w, rc)
		if ctx.Err() != nil {
			return nil
		}
		return err
	}
	argv := []string{kubeletLauncher, "logs"}
	if o.Lines > 0 {
		argv = append(argv, "--lines", strconv.Itoa(o.Lines))
	}
	if o.Follow {
		argv = append(argv, "--follow")
	}
	var stderr bytes.Buffer
	err := r.exec(ctx, ep, argv, nil, w, &stderr)
	if ctx.Err() != nil {
		return nil
	}
	if err != nil {
		return fmt.Errorf("endpoint %s: console log: %w: %s", ep.Name, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// Observe reads the pod: its endpoint container running, and the
// readiness probe's verdict as the launcher's health.
func (r *Runtime) Observe(ctx context.Context, ep endpointkit.RunningEndpoint) endpointkit.Observation {
	ns, name := splitPod(ep.Pod)
	if name == "" {
		return endpointkit.Observation{}
	}
	pod, err := r.cs.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		if apierrors.IsNotFound(err) {
			return endpointkit.Observation{Detail: "pod " + ep.Pod + " is gone"}
		}
		return endpointkit.Observation{Health: qemulaunch.HealthStarting, Running: true, Detail: "cluster: " + err.Error()}
	}
	var o endpointkit.Observation
	for _, cs := range pod.Status.ContainerStatuses {
		if cs.Name != container {
			continue
		}
		switch {
		case cs.State.Running != nil && cs.Ready:
			o.Running, o.Health = true, qemulaunch.HealthReady
		case cs.State.Running != nil:
			o.Running, o.Health = true, qemulaunch.HealthStarting
			if pod.DeletionTimestamp != nil {
				o.Health = qemulaunch.HealthStopping
			}
		case cs.State.Terminated != nil:
			o.Health, o.Detail = qemulaunch.HealthFailed, fmt.Sprintf("launcher exited with status %d (%s)", cs.State.Terminated.ExitCode, cs.State.Terminated.Reason)
		case cs.State.Waiting != nil:
			o.Running, o.Health, o.Detail = true, qemulaunch.HealthStarting, cs.State.Waiting.Reason
		}
	}
	if o.Health == "" && pod.Status.Phase == corev1.PodPending {
		o.Running, o.Health, o.Detail = true, qemulaunch.HealthStarting, "pod pending"
	}
	return o
}

// lockedWriter lets client-go's goroutines write an error buffer safely.
type lockedWriter struct {
	mu sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lockedWriter) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.String()
}
