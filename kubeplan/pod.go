package kubeplan

import (
	"fmt"
	"slices"
	"strings"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/endpointkit/endpointkit/wiring"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Where things are inside the containers.
const (
	// LauncherPath and ImageDir are where an endpoint image (the
	// Dockerfile imagebuild writes) holds the launcher and the VM image.
	LauncherPath = "/usr/local/bin/endpoint"
	ImageDir     = "/image"
	// LessonImageDir is where a lesson-content image holds the lesson
	// directory; the image must also have a cp program on its PATH.
	LessonImageDir = "/lesson"
	// LessonDir is where the endpoint container sees the lesson directory.
	LessonDir = "/lesson"

	// IdentityDir is where an endpoint container sees its identity
	// Secret (the file vmimage.IdentityFile in it).
	IdentityDir = "/run/endpointkit-identity"

	lessonVolume   = "lesson"
	identityVolume = "identity"
	lessonStaging  = "/mnt/lesson" // the init container's view of the volume
	tunVolume      = "dev-net-tun"

	defaultMemoryMiB  = 512
	overheadMemoryMiB = 128 // QEMU and the launcher beside the guest's memory
	defaultCPURequest = 250 // millicores per vCPU
	// terminationGrace covers the launcher's own grace for the guest to
	// power off (20 s, ×4 under TCG).
	terminationGrace = 90
)

// Launch is how an endpoint container runs the launcher.
type Launch struct {
	// Command replaces the image's entrypoint.
	Command []string
	Env     []corev1.EnvVar
	// Ready is the readiness probe's command: it succeeds once the guest
	// answers on its management port.
	Ready []string
}

// LaunchInput is what a Launcher is told about one endpoint's pod.
type LaunchInput struct {
	Endpoint *endpoint.Endpoint
	// Forward are the guest ports forwarded from the pod's eth0: the
	// lesson's, then the image's.
	Forward []int
	// LessonDir is the lesson directory in the container; "" when the pod
	// has none.
	LessonDir string
	// Identity is the instance identity file in the container (in
	// IdentityDir), for an image that takes one (Image.Identity); "" when
	// the image takes none.
	Identity string
}

// Launcher renders the launcher invocation of one endpoint (DefaultLauncher
// uses the launcher contract, qemulaunch.Launch).
type Launcher func(LaunchInput) (Launch, error)

// DefaultLauncher runs `endpoint run --image /image` configured through its
// ENDPOINT_* environment, rendered by the launcher contract
// (qemulaunch.Launch.Env): name, forwarded ports, data interfaces to wait
// for, guest MACs, lesson directory. Readiness is `endpoint health`, which
// reads the same ENDPOINT_NAME. A TCP probe on the forwarded port would not
// do: QEMU's user-mode forward accepts connections before the guest
// listens.
func DefaultLauncher(in LaunchInput) (Launch, error) {
	ep := in.Endpoint
	l := qemulaunch.Launch{Name: ep.Name, Lesson: in.LessonDir, Identity: in.Identity, Interfaces: len(ep.Interfaces)}
	for _, p := range in.Forward {
		l.Forwards = append(l.Forwards, qemulaunch.Forward{Proto: "tcp", HostPort: p, GuestPort: p})
	}
	l.MACs = append(l.MACs, qemulaunch.InterfaceMAC{Interface: "eth0", MAC: ep.ManagementMAC})
	for _, ifc := range ep.Interfaces {
		l.MACs = append(l.MACs, qemulaunch.InterfaceMAC{Interface: ifc.Name, MAC: ifc.MAC})
	}
	var env []corev1.EnvVar
	for _, kv := range l.Env() {
		name, value, _ := strings.Cut(kv, "=")
		env = append(env, corev1.EnvVar{Name: name, Value: value})
	}
	return Launch{
		Command: []string{LauncherPath, "run", "--image", ImageDir},
		Env:     env,
		Ready:   []string{LauncherPath, "health"},
	}, nil
}

// pod renders one endpoint's Pod.
func (r *renderer) pod(ep *endpoint.Endpoint, pe *wiring.EndpointPlan) (*corev1.Pod, error) {
	if pe.Name != ep.Name {
		return nil, fmt.Errorf("%w: endpoint %d is %q in the model but %q in the plan", ErrInvalid, ep.Index, ep.Name, pe.Name)
	}
	img, ok := r.o.Images[ep.Image]
	if !ok || img.Ref == "" {
		return nil, fmt.Errorf("%w: endpoint %q: image %q has no registry reference (push it, then pass its repository@sha256:… in Options.Images)", ErrImage, ep.Name, ep.Image)
	}
	if !byDigest(img.Ref) {
		return nil, fmt.Errorf("%w: endpoint %q: image %q is %q, not a reference by digest (repository@sha256:…)", ErrImage, ep.Name, ep.Image, img.Ref)
	}
	forward := slices.Clone(ep.Ports)
	extra := slices.Clone(img.Ports)
	slices.Sort(extra)
	for _, p := range extra {
		if p > 0 && p <= 65535 && !slices.Contains(forward, p) {
			forward = append(forward, p)
		}
	}
	in := LaunchInput{Endpoint: ep, Forward: forward}
	if r.o.LessonImage != "" || r.lessonByConfigMap() {
		in.LessonDir = LessonDir
	}
	if img.Identity {
		in.Identity = IdentityDir + "/" + vmimage.IdentityFile
	}
	launcher := r.o.Launcher
	if launcher == nil {
		launcher = DefaultLauncher
	}
	launch, err := launcher(in)
	if err != nil {
		return nil, fmt.Errorf("kubeplan: endpoint %q: launcher: %w", ep.Name, err)
	}
	networks, err := r.networksAnnotation(pe)
	if err != nil {
		return nil, err
	}

	c := corev1.Container{
		Name:      "endpoint",
		Image:     img.Ref,
		Command:   launch.Command,
		Env:       launch.Env,
		Resources: r.resources(img),
		ReadinessProbe: &corev1.Probe{
			ProbeHandler:     corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: launch.Ready}},
			PeriodSeconds:    2,
			TimeoutSeconds:   5,
			FailureThreshold: 1,
		},
		SecurityContext: r.securityContext(),
	}
	for _, p := range forward {
		c.Ports = append(c.Ports, corev1.ContainerPort{ContainerPort: int32(p), Protocol: corev1.ProtocolTCP})
	}
	no := false
	grace := int64(terminationGrace)
	pod := &corev1.Pod{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Pod"},
		ObjectMeta: r.meta(ep.Name, LabelEndpoint, ep.Name),
		Spec: corev1.PodSpec{
			ServiceAccountName:            ServiceAccountName,
			AutomountServiceAccountToken:  &no,
			EnableServiceLinks:            &no,
			Hostname:                      ep.Name,
			TerminationGracePeriodSeconds: &grace,
			NodeName:                      r.o.Node,
		},
	}
	if networks != "" {
		pod.Annotations = map[string]string{NetworksAnnotation: networks}
	}
	if r.o.Node == "" {
		pod.Spec.Affinity = &corev1.Affinity{PodAffinity: &corev1.PodAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: []corev1.PodAffinityTerm{{
				LabelSelector: &metav1.LabelSelector{MatchLabels: map[string]string{LabelInstance: r.p.Instance}},
				TopologyKey:   corev1.LabelHostname,
			}},
		}}
	}
	if r.o.Security == SecurityMinimal {
		chardev := corev1.HostPathCharDev
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: tunVolume,
			VolumeSource: corev1.VolumeSource{HostPath: &corev1.HostPathVolumeSource{Path: "/dev/net/tun", Type: &chardev}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: tunVolume, MountPath: "/dev/net/tun"})
	}
	if r.o.LessonImage != "" {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: lessonVolume,
			VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}})
		pod.Spec.InitContainers = []corev1.Container{{
			Name:         "lesson",
			Image:        r.o.LessonImage,
			Command:      []string{"cp", "-a", LessonImageDir + "/.", lessonStaging + "/"},
			VolumeMounts: []corev1.VolumeMount{{Name: lessonVolume, MountPath: lessonStaging}},
		}}
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: lessonVolume, MountPath: LessonDir, ReadOnly: true})
	}
	if r.lessonByConfigMap() {
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: lessonVolume, VolumeSource: r.lessonVolumeSource()})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: lessonVolume, MountPath: LessonDir, ReadOnly: true})
	}
	if img.Identity {
		readOnly := int32(0o400)
		pod.Spec.Volumes = append(pod.Spec.Volumes, corev1.Volume{Name: identityVolume,
			VolumeSource: corev1.VolumeSource{Secret: &corev1.SecretVolumeSource{SecretName: IdentitySecret(ep.Name), DefaultMode: &readOnly}}})
		c.VolumeMounts = append(c.VolumeMounts, corev1.VolumeMount{Name: identityVolume, MountPath: IdentityDir, ReadOnly: true})
	}
	pod.Spec.Containers = []corev1.Container{c}
	return pod, nil
}

// IdentitySecret is the name of an endpoint's identity Secret.
func IdentitySecret(endpoint string) string { return endpoint + "-identity" }

// identitySecret renders the endpoint's identity Secret from
// Options.Identities; nil when its image takes none or none is given.
func (r *renderer) identitySecret(ep *endpoint.Endpoint) *corev1.Secret {
	raw, ok := r.o.Identities[ep.Name]
	if !ok || !r.o.Images[ep.Image].Identity {
		return nil
	}
	return &corev1.Secret{
		TypeMeta:   metav1.TypeMeta{APIVersion: "v1", Kind: "Secret"},
		ObjectMeta: r.meta(IdentitySecret(ep.Name), LabelEndpoint, ep.Name),
		Type:       corev1.SecretTypeOpaque,
		Data:       map[string][]byte{vmimage.IdentityFile: raw},
	}
}

func (r *renderer) securityContext() *corev1.SecurityContext {
	if r.o.Security == SecurityMinimal {
		return &corev1.SecurityContext{Capabilities: &corev1.Capabilities{Add: []corev1.Capability{"NET_ADMIN"}}}
	}
	yes := true
	return &corev1.SecurityContext{Privileged: &yes}
}

// resources requests the guest's memory plus the launcher's overhead and
// CPURequest per vCPU; the KVM device resource when configured.
func (r *renderer) resources(img Image) corev1.ResourceRequirements {
	mem, cpus, per := img.MemoryMiB, img.CPUs, r.o.CPURequest
	if mem <= 0 {
		mem = defaultMemoryMiB
	}
	if cpus <= 0 {
		cpus = 1
	}
	if per <= 0 {
		per = defaultCPURequest
	}
	req := corev1.ResourceList{
		corev1.ResourceMemory: *resource.NewQuantity(int64(mem+overheadMemoryMiB)<<20, resource.BinarySI),
		corev1.ResourceCPU:    *resource.NewMilliQuantity(int64(cpus*per), resource.DecimalSI),
	}
	rr := corev1.ResourceRequirements{Requests: req}
	if r.o.KVMResource != "" {
		one := *resource.NewQuantity(1, resource.DecimalSI)
		rr.Requests[corev1.ResourceName(r.o.KVMResource)] = one
		rr.Limits = corev1.ResourceList{corev1.ResourceName(r.o.KVMResource): one}
	}
	return rr
}
