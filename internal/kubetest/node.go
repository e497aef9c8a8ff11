package kubetest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/endpointkit/endpointkit/internal/containerdtest"
	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/vishvananda/netlink"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// NodeOptions configure the node StartControlPlane adds when
// Options.Node is set.
type NodeOptions struct {
	// Kubelet and Multus are the binaries (see Build).
	Kubelet, Multus string
	// Name is the node's name; default "localhost". The API server
	// reaches the kubelet (exec, logs, port-forward) at the node's
	// Hostname address, which is its name, so the name must resolve to
	// this machine's loopback, where the kubelet listens: the kubelet
	// refuses a loopback --node-ip and then publishes no address at all.
	// Clusters of parallel tests each have their own API server, so the
	// one name never collides.
	Name string
}

// Node is a kubelet with its container runtime, CNI and image registry,
// all on this machine, started by PID:
//
//   - Debian's docker-registry on 127.0.0.1 (Registry), holding the pod
//     sandbox image ("pause": a static busybox sleeping, with an
//     Entrypoint) and whatever tests push;
//   - Debian's containerd with its CRI plugin (internal/containerdtest's
//     configuration: restrict_oom_score_adj, its own root, state and
//     socket), pulling from the registry over plain HTTP as its hosts.toml
//     says;
//   - CNI: the Multus thin plugin in a bin directory beside links to
//     /usr/lib/cni/*, delegating the default network to a bridge (Bridge,
//     no address on the host: pods are reached through the API server)
//     with host-local IPAM whose leases live in the node's directory;
//   - the kubelet (cgroup v1 hybrid settings, cgroupfs, no QoS cgroups, no
//     eviction, no iptables chains), its root directory, pod logs and port
//     in the node's directory.
type Node struct {
	Name string `json:"name"`
	Dir  string `json:"dir"`
	// Registry is 127.0.0.1:PORT; image references there pull as they are.
	Registry string `json:"registry"`
	// PauseImage is the pod sandbox image in the registry.
	PauseImage string `json:"pauseImage"`
	// Containerd is the runtime's socket; Bridge the default network's
	// bridge; IPAMDir host-local's lease directory of the default
	// network.
	Containerd string `json:"containerd"`
	Bridge     string `json:"bridge"`
	IPAMDir    string `json:"ipamDir"`
	// KubeletRoot is the kubelet's --root-dir (bind-mounted on itself by
	// the kubelet); PodLogs its pod log directory.
	KubeletRoot string `json:"kubeletRoot"`
	PodLogs     string `json:"podLogs"`
	// Processes are the registry, containerd and kubelet, in start order.
	Processes []*Process `json:"processes"`
	// Sysctls are the kernel settings the kubelet changes at start-up
	// (overcommit, panic on oops, key quotas), as they were before; Stop
	// puts them back.
	Sysctls map[string]string `json:"sysctls"`
}

// kubeletSysctls are the settings a kubelet with protectKernelDefaults off
// sets on its host.
var kubeletSysctls = []string{"vm/overcommit_memory", "vm/panic_on_oom", "kernel/panic", "kernel/panic_on_oops",
	"kernel/keys/root_maxkeys", "kernel/keys/root_maxbytes"}

// defaultSubnet is the pods' eth0 network. Without an address on the host
// bridge (isGateway off) it is never routed on the host, so nodes of
// parallel test clusters on one machine may all use it.
const defaultSubnet = "10.244.0.0/24"

// startNode starts the node's programs and waits until the node is Ready.
// The node is recorded in cp (cluster.json) as soon as anything of it
// runs, so Stop finds it.
func (cp *ControlPlane) startNode(ctx context.Context, o NodeOptions, log *slog.Logger) error {
	if o.Kubelet == "" || o.Multus == "" {
		return errors.New("kubetest: NodeOptions.Kubelet and NodeOptions.Multus are required")
	}
	n := &Node{Name: o.Name, Dir: filepath.Join(cp.Dir, "node")}
	if n.Name == "" {
		n.Name = "localhost"
	}
	n.Bridge = "ekn" + randomHex(4)
	n.IPAMDir = filepath.Join(n.Dir, "ipam")
	n.KubeletRoot = filepath.Join(n.Dir, "kubelet")
	n.PodLogs = filepath.Join(n.Dir, "pod-logs")
	for _, d := range []string{n.Dir, n.IPAMDir, n.KubeletRoot, n.PodLogs} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	cp.Node = n
	start := time.Now()
	if err := n.startRegistry(ctx); err != nil {
		return err
	}
	if err := cp.save(); err != nil {
		return err
	}
	if err := n.pushPause(ctx); err != nil {
		return err
	}
	log.Info("kubetest: registry ready", "registry", n.Registry, "took", time.Since(start).Round(time.Millisecond))
	if err := n.startContainerd(ctx, cp, o.Multus); err != nil {
		return err
	}
	if err := cp.save(); err != nil {
		return err
	}
	n.Sysctls = map[string]string{}
	for _, k := range kubeletSysctls {
		if raw, err := os.ReadFile(filepath.Join("/proc/sys", k)); err == nil {
			n.Sysctls[k] = strings.TrimSpace(string(raw))
		}
	}
	if err := n.startKubelet(ctx, cp, o.Kubelet); err != nil {
		return err
	}
	if err := cp.save(); err != nil {
		return err
	}
	if err := n.waitReady(ctx, cp); err != nil {
		return err
	}
	log.Info("kubetest: node ready", "node", n.Name, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// startRegistry runs docker-registry on a free loopback port.
func (n *Node) startRegistry(ctx context.Context) error {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return fmt.Errorf("kubetest: docker-registry not found (install Debian's docker-registry: make deps): %w", err)
	}
	dir := filepath.Join(n.Dir, "registry")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var lastErr error
	for range 3 {
		ports := freePorts(1)
		if ports == nil {
			return errors.New("kubetest: no free loopback port")
		}
		n.Registry = "127.0.0.1:" + strconv.Itoa(ports[0])
		conf := filepath.Join(dir, "config.yml")
		yml := fmt.Sprintf("version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n    rootdirectory: %s\n  delete:\n    enabled: true\nhttp:\n  addr: %s\n",
			filepath.Join(dir, "storage"), n.Registry)
		if err := os.WriteFile(conf, []byte(yml), 0o644); err != nil {
			return err
		}
		p, err := startProcess("docker-registry", []string{bin, "serve", conf}, conf, filepath.Join(dir, "registry.log"))
		if err != nil {
			return err
		}
		n.Processes = append(n.Processes, p)
		if lastErr = waitHTTP(ctx, p, nil, "http://"+n.Registry+"/v2/", "{}", 30*time.Second); lastErr == nil {
			return nil
		}
		p.Stop(5 * time.Second)
		n.Processes = n.Processes[:len(n.Processes)-1]
	}
	return lastErr
}

// pushPause pushes the pod sandbox image.
func (n *Node) pushPause(ctx context.Context) error {
	img, err := containerdtest.NewBusyboxImage("/bin/busybox", "sleep", "2147483647")
	if err != nil {
		return err
	}
	ref, err := name.NewTag(n.Registry + "/endpointkit/pause:1")
	if err != nil {
		return err
	}
	if err := remote.Write(ref, img, remote.WithContext(ctx)); err != nil {
		return fmt.Errorf("kubetest: push the pause image: %w", err)
	}
	n.PauseImage = ref.String()
	return nil
}

// startContainerd writes the CNI and registry configuration and starts
// containerd with its CRI plugin.
func (n *Node) startContainerd(ctx context.Context, cp *ControlPlane, multus string) error {
	d := n.containerd()
	paths := d.Paths
	if len(paths.Address) > 100 {
		return fmt.Errorf("kubetest: containerd socket %s is too long for a unix socket: use a shorter directory", paths.Address)
	}
	binDir, confDir, hosts := filepath.Join(n.Dir, "cni", "bin"), filepath.Join(n.Dir, "cni", "net.d"), filepath.Join(n.Dir, "certs.d")
	for _, d := range []string{paths.Root, paths.State, binDir, confDir, filepath.Join(hosts, n.Registry)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	plugins, err := filepath.Glob("/usr/lib/cni/*")
	if err != nil || len(plugins) == 0 {
		return fmt.Errorf("kubetest: no CNI plugins in /usr/lib/cni (install Debian's containernetworking-plugins: make deps)")
	}
	for _, p := range append(plugins, multus) {
		if err := os.Symlink(p, filepath.Join(binDir, filepath.Base(p))); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	conf, err := n.multusConfig(cp.Kubeconfig)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(confDir, "00-multus.conf"), conf, 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(hosts, n.Registry, "hosts.toml"), []byte(containerdtest.HostsTOML(n.Registry, "")), 0o644); err != nil {
		return err
	}
	cri := &containerdtest.CRI{SandboxImage: n.PauseImage, CNIBinDir: binDir, CNIConfDir: confDir, RegistryConfigDir: hosts}
	if err := os.WriteFile(paths.Config, []byte(containerdtest.Config(paths, "", cri, "")), 0o644); err != nil {
		return err
	}
	bin, err := exec.LookPath("containerd")
	if err != nil {
		return fmt.Errorf("kubetest: containerd not found (make deps): %w", err)
	}
	p, err := startProcess("containerd", []string{bin, "--config", paths.Config}, paths.Config, paths.Log)
	if err != nil {
		return err
	}
	n.Processes = append(n.Processes, p)
	n.Containerd = paths.Address
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := d.Ctr(ctx, "", "version"); err == nil {
			return nil
		}
		if why := p.exited(); why != "" {
			return fmt.Errorf("kubetest: containerd exited at start-up (%s); its log (%s) ends:\n%s", why, p.Log, p.LogTail(3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: containerd did not answer on %s within 30s; its log (%s) ends:\n%s", paths.Address, p.Log, p.LogTail(3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// multusConfig is the node's CNI configuration: Multus, delegating the
// default network to the node's bridge, its cache in the node's directory.
func (n *Node) multusConfig(kubeconfig string) ([]byte, error) {
	def := map[string]any{
		"cniVersion": "0.4.0",
		"name":       "ekdefault",
		"plugins": []any{map[string]any{
			"type":   "bridge",
			"bridge": n.Bridge,
			"ipam": map[string]any{
				"type":    "host-local",
				"ranges":  [][]map[string]string{{{"subnet": defaultSubnet}}},
				"dataDir": n.IPAMDir,
			},
		}},
	}
	return json.MarshalIndent(map[string]any{
		"cniVersion": "0.4.0",
		"name":       "multus-cni-network",
		"type":       "multus",
		"kubeconfig": kubeconfig,
		"cniDir":     filepath.Join(n.Dir, "multus"),
		"logFile":    filepath.Join(n.Dir, "multus.log"),
		"logLevel":   "error",
		"delegates":  []any{def},
	}, "", "  ")
}

// kubeletConfig is the KubeletConfiguration that works on this kind of
// machine (docs/kubernetes.md): cgroup v1 hybrid, no QoS cgroups, no
// eviction, no kernel or iptables changes beyond the sysctls it insists on.
func (n *Node) kubeletConfig(port int) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: 127.0.0.1
port: %d
readOnlyPort: 0
healthzPort: 0
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
evictionHard: {}
localStorageCapacityIsolation: false
makeIPTablesUtilChains: false
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
serializeImagePulls: false
containerRuntimeEndpoint: unix://%s
podLogsDir: %s
`, port, n.Containerd, n.PodLogs)
}

// startKubelet starts the kubelet on a free port with the admin
// kubeconfig.
func (n *Node) startKubelet(ctx context.Context, cp *ControlPlane, bin string) error {
	var lastErr error
	for range 3 {
		ports := freePorts(1)
		if ports == nil {
			return errors.New("kubetest: no free loopback port")
		}
		conf := filepath.Join(n.Dir, "kubelet.yaml")
		if err := os.WriteFile(conf, []byte(n.kubeletConfig(ports[0])), 0o644); err != nil {
			return err
		}
		argv := []string{bin,
			"--config", conf,
			"--kubeconfig", cp.Kubeconfig,
			"--root-dir", n.KubeletRoot,
			"--cert-dir", filepath.Join(n.Dir, "kubelet-pki"),
			"--hostname-override", n.Name,
			"--v", "1",
		}
		p, err := startProcess("kubelet", argv, n.KubeletRoot, filepath.Join(n.Dir, "kubelet.log"))
		if err != nil {
			return err
		}
		n.Processes = append(n.Processes, p)
		// Registered is enough here; waitReady waits for Ready.
		lastErr = n.poll(ctx, cp, p, 90*time.Second, func(*corev1.Node) bool { return true })
		if lastErr == nil {
			return nil
		}
		p.Stop(10 * time.Second)
		n.Processes = n.Processes[:len(n.Processes)-1]
		if !strings.Contains(p.LogTail(8000), "address already in use") {
			break
		}
	}
	return lastErr
}

// waitReady waits until the node reports Ready and is schedulable: no
// NoSchedule taint left (the node lifecycle controller lifts the
// not-ready taint the kubelet registers the node with).
func (n *Node) waitReady(ctx context.Context, cp *ControlPlane) error {
	kubelet := n.Processes[len(n.Processes)-1]
	return n.poll(ctx, cp, kubelet, 2*time.Minute, func(node *corev1.Node) bool {
		for _, t := range node.Spec.Taints {
			if t.Effect == corev1.TaintEffectNoSchedule {
				return false
			}
		}
		for _, c := range node.Status.Conditions {
			if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
				return true
			}
		}
		return false
	})
}

// poll waits until the node object exists and ok says yes, the kubelet
// exits or timeout passes.
func (n *Node) poll(ctx context.Context, cp *ControlPlane, kubelet *Process, timeout time.Duration, ok func(*corev1.Node) bool) error {
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	last := "not registered"
	for {
		node, err := cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil {
			if ok(node) {
				return nil
			}
			last = conditions(node)
		}
		if why := kubelet.exited(); why != "" {
			return fmt.Errorf("kubetest: kubelet (pid %d) exited (%s); its log (%s) ends:\n%s", kubelet.PID, why, kubelet.Log, kubelet.LogTail(3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: node %s not ready after %v (%s); the kubelet's log (%s) ends:\n%s", n.Name, timeout, last, kubelet.Log, kubelet.LogTail(3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

func conditions(node *corev1.Node) string {
	var cs []string
	for _, c := range node.Status.Conditions {
		cs = append(cs, fmt.Sprintf("%s=%s (%s)", c.Type, c.Status, c.Message))
	}
	for _, t := range node.Spec.Taints {
		cs = append(cs, "taint "+t.ToString())
	}
	return strings.Join(cs, ", ")
}

// stop removes the node's pods (the kubelet stops their containers and
// the CNI plugins tear their networks down), then stops the kubelet,
// whatever containerd still runs, containerd and the shims it started,
// the registry; undoes the kubelet's mounts, removes the default bridge
// and the pod log links it made in /var/log/containers, and puts the
// kernel settings back. Everything by PID or by the node's own names.
func (n *Node) stop(cp *ControlPlane) error {
	var errs []error
	if n.running("kubelet") {
		if err := n.deletePods(cp); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(n.Processes) - 1; i >= 0; i-- {
		p := n.Processes[i]
		if p.Name == "containerd" && p.Running() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			n.containerd().RemoveAll(ctx)
			cancel()
		}
		if err := p.Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
		if p.Name == "containerd" && n.Containerd != "" {
			for _, pid := range containerdtest.ShimPIDs(n.Containerd) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	}
	for _, m := range containerdtest.MountsUnder(n.Dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil && !errors.Is(err, syscall.EINVAL) {
			errs = append(errs, fmt.Errorf("kubetest: unmount %s: %w", m, err))
		}
	}
	if n.Bridge != "" {
		if l, err := netlink.LinkByName(n.Bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				errs = append(errs, fmt.Errorf("kubetest: delete bridge %s: %w", n.Bridge, err))
			}
		}
	}
	removeLogLinks(n.PodLogs)
	for k, v := range n.Sysctls {
		os.WriteFile(filepath.Join("/proc/sys", k), []byte(v), 0o644)
	}
	return errors.Join(errs...)
}

// containerd is the node's containerd, in its directory.
func (n *Node) containerd() *containerdtest.Daemon {
	return containerdtest.At(filepath.Join(n.Dir, "containerd"), "")
}

func (n *Node) running(name string) bool {
	for _, p := range n.Processes {
		if p.Name == name {
			return p.Running()
		}
	}
	return false
}

// deletePods deletes every pod of the cluster and waits (a minute at
// most) until the kubelet has stopped them.
func (n *Node) deletePods(cp *ControlPlane) error {
	cs, err := kubernetes.NewForConfig(cp.RESTConfig())
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	pods, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil // the API server is gone: containerd's clean-up does the rest
	}
	zero := int64(0)
	for _, p := range pods.Items {
		cs.CoreV1().Pods(p.Namespace).Delete(ctx, p.Name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	}
	for ctx.Err() == nil {
		left, err := cs.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
		if err != nil || len(left.Items) == 0 {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Deleted without grace, a pod leaves the API at once; the kubelet then
	// stops its sandbox: CNI DEL, and the sandbox's network namespace
	// (/run/netns/cni-…) removed. A node stopped before that leaves the
	// namespace behind, so wait until no task of the CRI runs.
	d := n.containerd()
	for ctx.Err() == nil {
		out, err := d.Ctr(ctx, "k8s.io", "tasks", "ls")
		if err != nil || !strings.Contains(out, "RUNNING") {
			return nil
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("kubetest: pods or their sandboxes still there 90s after their deletion")
}

// containerLogs is where a kubelet links each container's log.
const containerLogs = "/var/log/containers"

// removeLogLinks removes the links in /var/log/containers that point into
// podLogs.
func removeLogLinks(podLogs string) {
	ents, err := os.ReadDir(containerLogs)
	if err != nil {
		return
	}
	for _, e := range ents {
		p := filepath.Join(containerLogs, e.Name())
		if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, podLogs+"/") {
			os.Remove(p)
		}
	}
}

// Leftovers lists what of the node is still on the machine: its
// processes, containerd's shims, mounts under its directory, its bridge,
// pod log links. Empty means clean.
func (n *Node) Leftovers() []string {
	var out []string
	for _, p := range n.Processes {
		if p.Running() {
			out = append(out, fmt.Sprintf("%s pid %d", p.Name, p.PID))
		}
	}
	if n.Containerd != "" {
		for _, pid := range containerdtest.ShimPIDs(n.Containerd) {
			out = append(out, fmt.Sprintf("shim pid %d", pid))
		}
	}
	for _, m := range containerdtest.MountsUnder(n.Dir) {
		out = append(out, "mount "+m)
	}
	if _, err := netlink.LinkByName(n.Bridge); err == nil {
		out = append(out, "bridge "+n.Bridge)
	}
	if ents, err := os.ReadDir(containerLogs); err == nil {
		for _, e := range ents {
			if target, err := os.Readlink(filepath.Join(containerLogs, e.Name())); err == nil && strings.HasPrefix(target, n.PodLogs+"/") {
				out = append(out, "log link "+e.Name())
			}
		}
	}
	return out
}
