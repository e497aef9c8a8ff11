package kuberun

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/qemulaunch"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
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
		case cs.State.Running != nil && pod.DeletionTimestamp != nil:
			o.Running, o.Health = true, qemulaunch.HealthStopping
		case cs.State.Running != nil:
			// The readiness probe runs every few seconds: between two runs
			// (just after an Up, which returns once SSH answers) the
			// launcher's own health says more than the pod's condition.
			o.Running, o.Health = true, r.launcherHealth(ctx, ep)
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

// launcherHealth is the endpoint launcher's health (`endpoint health`
// in its container): starting when it cannot be asked.
func (r *Runtime) launcherHealth(ctx context.Context, ep endpointkit.RunningEndpoint) string {
	var out bytes.Buffer
	_ = r.exec(ctx, ep, []string{kubeplan.LauncherPath, "health"}, nil, &out, io.Discard) // not ready exits 1
	switch state, _, _ := strings.Cut(strings.TrimSpace(out.String()), " "); state {
	case qemulaunch.HealthReady, qemulaunch.HealthRestarting, qemulaunch.HealthStopping, qemulaunch.HealthFailed:
		return state
	}
	return qemulaunch.HealthStarting
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
