package kuberun

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/kubeplan"
	"github.com/endpointkit/endpointkit/qemulaunch"
	corev1 "k8s.io/api/core/v1"
)

// listenAll makes the launcher's forwards listen on the pod's loopback
// too: a port forward through the API server (the kubelet, the container
// runtime) connects to localhost in the pod's network namespace.
const listenAll = "0.0.0.0"

// Render turns a placement (endpointkit.Plan) into the instance's
// Kubernetes objects without contacting a cluster or a registry: images
// are referenced by the digests of their OCI layouts (built when missing)
// under o.Registry, or as o.Images names them by digest.
func Render(ctx context.Context, p *endpointkit.Placement, o Options) (*kubeplan.Objects, error) {
	ims, err := o.resolveImages(ctx, p, false, func(string) {})
	if err != nil {
		return nil, err
	}
	return o.render(p, ims, nil)
}

// render is kubeplan.Render of the placement: the pods run the launch the
// placement gives each endpoint (the launcher contract), rewritten for the
// container — the image at kubeplan.ImageDir, the lesson directory the
// init container fills, the state directory the launcher's default — and
// listening on the pod's loopback for port forwards. ids are the
// endpoints' identities (identities); without them (Render, `lesson
// render --kubernetes`) no identity Secret is rendered: they hold private
// keys, made for an instance only when it is placed.
func (o *Options) render(p *endpointkit.Placement, ims *images, ids map[string][]byte) (*kubeplan.Objects, error) {
	if p.Model == nil {
		return nil, fmt.Errorf("instance %s: the placement has no model (make it with endpointkit.Plan or Up)", p.Instance)
	}
	launches := map[string]qemulaunch.Launch{}
	for _, el := range p.Endpoints {
		l := el.Launch
		l.Image, l.Lesson, l.State, l.NetNS, l.Listen = kubeplan.ImageDir, "", "", "", listenAll
		launches[el.Endpoint.Name] = l
	}
	stage := max(p.Stage, 0)
	return kubeplan.Render(p.Model, p.Wiring, kubeplan.Options{
		Stage:       stage,
		Images:      ims.bySlug,
		LessonImage: ims.lesson,
		LessonFiles: ims.lessonFiles,
		Node:        o.Node,
		Security:    o.Security,
		KVMResource: o.KVMResource,
		CPURequest:  o.CPURequest,
		Identities:  ids,
		Launcher: func(in kubeplan.LaunchInput) (kubeplan.Launch, error) {
			l, ok := launches[in.Endpoint.Name]
			if !ok {
				return kubeplan.Launch{}, fmt.Errorf("no launch for endpoint %s in the placement", in.Endpoint.Name)
			}
			l.Lesson, l.Identity = in.LessonDir, in.Identity
			var env []corev1.EnvVar
			for _, kv := range l.Env() {
				k, v, _ := strings.Cut(kv, "=")
				env = append(env, corev1.EnvVar{Name: k, Value: v})
			}
			return kubeplan.Launch{
				Command: []string{kubeplan.LauncherPath, "run"},
				Env:     env,
				Ready:   []string{kubeplan.LauncherPath, "health"},
			}, nil
		},
	})
}

// Place resolves the images (pushing what the registry lacks), renders the
// instance's objects and applies them; an existing namespace of the
// instance is refused, or removed first with p.Replace. It records each
// endpoint's pod before anything is created, so a failed Place is removed
// by Remove as a complete one is.
func (r *Runtime) Place(ctx context.Context, p *endpointkit.Placement) error {
	ns := kubeplan.Namespace(p.Instance)
	exists, err := r.namespaceExists(ctx, ns)
	if err != nil {
		return err
	}
	if exists {
		if !p.Replace {
			return r.namespaceExistsError(p.Instance)
		}
		p.Report(endpointkit.StepWire, "", "removing the existing namespace "+ns)
		if err := r.remove(ctx, p.Instance, time.Second); err != nil {
			return err
		}
	}
	ims, err := r.opts.resolveImages(ctx, p, true, func(msg string) { p.Report(endpointkit.StepWire, "", msg) })
	if err != nil {
		return err
	}
	ids, idFiles, err := identities(p)
	if err != nil {
		return err
	}
	if len(ids) > 0 { // Check left the identity Secrets' rights out
		if err := r.checkAccess(ctx, ns, func(p permission) bool { return p.identity }); err != nil {
			return fmt.Errorf("instance %s: %w", p.Instance, err)
		}
	}
	objs, err := r.opts.render(p, ims, ids)
	if err != nil {
		return err
	}
	for _, el := range p.Endpoints {
		name := el.Endpoint.Name
		pod := ns + "/" + name
		r.mu.Lock()
		r.sshPorts[pod] = sshPort(el)
		r.learnsKeys[pod] = learnsKeys(el.Image.Manifest)
		r.mu.Unlock()
		err := p.Record(name, func(e *endpointkit.RunningEndpoint) {
			e.Namespace, e.Pod = ns, pod
			e.Log = fmt.Sprintf("kubectl --context %s -n %s logs %s", r.context, ns, name)
			e.StateDir = filepath.Join(qemulaunch.DefaultStateRoot, name) // in the container
			e.IdentityFile = idFiles[name]                                // on this machine
		})
		if err != nil {
			return err
		}
	}
	t0 := time.Now()
	if err := r.applier.Apply(ctx, objs); err != nil {
		return fmt.Errorf("instance %s: %w (%s)", p.Instance, forbidden(err), r.where())
	}
	p.Report(endpointkit.StepWire, "", fmt.Sprintf("namespace %s on %s: %d pods, %d networks, %d services, %d identity secrets applied in %.1fs",
		ns, r.server, len(objs.Pods), len(objs.Networks), len(objs.Services), len(objs.Secrets), time.Since(t0).Seconds()))
	for _, el := range p.Endpoints {
		p.Report(endpointkit.StepBoot, el.Endpoint.Name, fmt.Sprintf("%s: pod %s/%s (%s)", el.Endpoint.Name, ns, el.Endpoint.Name, ims.bySlug[el.Endpoint.Image].Ref))
	}
	return nil
}

// sshPort is the endpoint's guest SSH port.
func sshPort(el endpointkit.EndpointLaunch) int {
	if p := el.Image.Manifest.APIs.SSH; p != 0 {
		return p
	}
	return 22
}
