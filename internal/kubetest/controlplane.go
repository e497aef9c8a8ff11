package kubetest

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// StateFile is the file in a control plane's directory that records it.
const StateFile = "cluster.json"

// Options configure StartControlPlane.
type Options struct {
	// Dir holds every file of the control plane (certificates, tokens,
	// logs, kubeconfig, cluster.json); it is created and must not hold a
	// running control plane. Required.
	Dir string
	// APIServer is the kube-apiserver binary (see BuildKubernetes).
	APIServer string
	// ControllerManager is the kube-controller-manager binary; when given
	// it runs the namespace and service-account controllers, so deleted
	// namespaces go away and each namespace gets its `default` account.
	ControllerManager string
	// Etcd is the etcd binary; default "etcd" on PATH (Debian etcd-server).
	Etcd string
	// Scheduler is the kube-scheduler binary; when given, pods without a
	// node are scheduled (by their affinity), as on any cluster.
	Scheduler string
	// Node, when set, adds a node: registry, containerd, CNI, kubelet (see
	// [Node]).
	Node *NodeOptions
	// CRDs are YAML files of CustomResourceDefinitions to install and wait
	// for (the Multus CRD, see BuildMultus).
	CRDs []string
	// EtcdOnDisk keeps etcd's data in Dir; by default it lives on tmpfs
	// (/dev/shm), as a throw-away test cluster's may: fsync there is free,
	// which keeps a loaded 2-CPU machine's disk out of the figures.
	EtcdOnDisk bool
	// Log receives progress; nil discards it.
	Log *slog.Logger
}

// ControlPlane is a running etcd and kube-apiserver on 127.0.0.1.
type ControlPlane struct {
	Dir    string `json:"dir"`
	Server string `json:"server"` // https://127.0.0.1:PORT
	Token  string `json:"token"`  // bearer token of AdminUser
	// NobodyToken authenticates NobodyUser, whom RBAC allows nothing.
	NobodyToken string     `json:"nobodyToken"`
	CAFile      string     `json:"caFile"` // the serving certificate, to trust
	Kubeconfig  string     `json:"kubeconfig"`
	EtcdDir     string     `json:"etcdDir"`
	Processes   []*Process `json:"processes"` // in start order
	// Node is the cluster's node, nil without Options.Node.
	Node *Node `json:"node,omitempty"`
}

// StartControlPlane starts etcd and kube-apiserver and waits until the API
// server is ready and the CRDs are established. On error nothing is left
// running and Dir is removed.
func StartControlPlane(ctx context.Context, o Options) (cp *ControlPlane, err error) {
	if o.Dir == "" || o.APIServer == "" {
		return nil, errors.New("kubetest: Options.Dir and Options.APIServer are required")
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	etcd := o.Etcd
	if etcd == "" {
		if etcd, err = exec.LookPath("etcd"); err != nil {
			return nil, fmt.Errorf("kubetest: etcd not found (install Debian's etcd-server: make deps): %w", err)
		}
	}
	if _, err := os.Stat(filepath.Join(o.Dir, StateFile)); err == nil {
		return nil, fmt.Errorf("kubetest: %s already holds a control plane (stop it first)", o.Dir)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, err
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	started := &ControlPlane{Dir: dir, CAFile: filepath.Join(dir, serverCertFile), Kubeconfig: filepath.Join(dir, "kubeconfig")}
	cp = started
	defer func() {
		if err != nil {
			started.Stop()
			cp = nil
		}
	}()
	cp.EtcdDir = filepath.Join(dir, "etcd")
	if !o.EtcdOnDisk {
		if st, err := os.Stat("/dev/shm"); err == nil && st.IsDir() {
			if cp.EtcdDir, err = os.MkdirTemp("/dev/shm", "ekkube-etcd-"); err != nil {
				return nil, err
			}
		}
	}
	if cp.Token, cp.NobodyToken, err = writePKI(dir); err != nil {
		return nil, fmt.Errorf("kubetest: certificates: %w", err)
	}
	start := time.Now()
	etcdURL, err := cp.startEtcd(ctx, etcd)
	if err != nil {
		return nil, err
	}
	log.Info("kubetest: etcd ready", "url", etcdURL, "took", time.Since(start).Round(time.Millisecond))
	if err := cp.startAPIServer(ctx, o.APIServer, etcdURL); err != nil {
		return nil, err
	}
	log.Info("kubetest: kube-apiserver ready", "server", cp.Server, "took", time.Since(start).Round(time.Millisecond))
	if err := cp.writeKubeconfig(); err != nil {
		return nil, err
	}
	if err := cp.save(); err != nil {
		return nil, err
	}
	if o.ControllerManager != "" {
		if err := cp.startControllerManager(ctx, o.ControllerManager); err != nil {
			return nil, err
		}
		if err := cp.save(); err != nil {
			return nil, err
		}
		log.Info("kubetest: kube-controller-manager ready", "took", time.Since(start).Round(time.Millisecond))
	}
	if o.Scheduler != "" {
		if err := cp.startScheduler(o.Scheduler); err != nil {
			return nil, err
		}
		if err := cp.save(); err != nil {
			return nil, err
		}
	}
	for _, crd := range o.CRDs {
		if err := InstallCRD(ctx, cp.RESTConfig(), crd); err != nil {
			return nil, err
		}
	}
	if o.Node != nil {
		if err := cp.startNode(ctx, *o.Node, log); err != nil {
			return nil, err
		}
	}
	log.Info("kubetest: control plane up", "kubeconfig", cp.Kubeconfig, "took", time.Since(start).Round(time.Millisecond))
	return cp, nil
}

// startEtcd starts a one-member etcd on free loopback ports, retrying when
// a port was taken between choosing and binding it.
func (cp *ControlPlane) startEtcd(ctx context.Context, bin string) (string, error) {
	var lastErr error
	for range 3 {
		ports := freePorts(2)
		if ports == nil {
			return "", errors.New("kubetest: no free loopback port")
		}
		client, peer := ports[0], ports[1]
		clientURL := "http://127.0.0.1:" + strconv.Itoa(client)
		peerURL := "http://127.0.0.1:" + strconv.Itoa(peer)
		argv := []string{bin,
			"--name", "ek", "--data-dir", cp.EtcdDir,
			"--listen-client-urls", clientURL, "--advertise-client-urls", clientURL,
			"--listen-peer-urls", peerURL, "--initial-advertise-peer-urls", peerURL,
			"--initial-cluster", "ek=" + peerURL, "--initial-cluster-state", "new",
			"--logger", "zap", "--log-level", "warn",
		}
		p, err := startProcess("etcd", argv, cp.EtcdDir, filepath.Join(cp.Dir, "etcd.log"))
		if err != nil {
			return "", err
		}
		cp.Processes = append(cp.Processes, p)
		if lastErr = waitHTTP(ctx, p, nil, clientURL+"/health", `"health":"true"`, 60*time.Second); lastErr == nil {
			return clientURL, nil
		}
		p.Stop(5 * time.Second)
		cp.Processes = cp.Processes[:len(cp.Processes)-1]
	}
	return "", lastErr
}

func (cp *ControlPlane) startAPIServer(ctx context.Context, bin, etcdURL string) error {
	hc, err := cp.httpClient()
	if err != nil {
		return err
	}
	var lastErr error
	for range 3 {
		ports := freePorts(1)
		if ports == nil {
			return errors.New("kubetest: no free loopback port")
		}
		port := ports[0]
		argv := []string{bin,
			"--etcd-servers", etcdURL,
			"--bind-address", "127.0.0.1", "--advertise-address", "127.0.0.1",
			// The kubelet listens on loopback and is reached by its node's
			// name (localhost; see NodeOptions.Name).
			"--kubelet-preferred-address-types", "Hostname",
			"--secure-port", strconv.Itoa(port),
			"--tls-cert-file", filepath.Join(cp.Dir, serverCertFile),
			"--tls-private-key-file", filepath.Join(cp.Dir, serverKeyFile),
			"--token-auth-file", filepath.Join(cp.Dir, tokenFile),
			"--authorization-mode", "RBAC",
			"--service-account-issuer", "https://kubernetes.default.svc",
			"--service-account-key-file", filepath.Join(cp.Dir, saPubFile),
			"--service-account-signing-key-file", filepath.Join(cp.Dir, saKeyFile),
			"--service-cluster-ip-range", "10.96.0.0/16", // room for many instances' Services
			// 127.0.0.1 may not be an Endpoints address: keep the
			// `kubernetes` Service's endpoints out of it.
			"--endpoint-reconciler-type", "none",
			"--allow-privileged=true",
			"--profiling=false",
			"--cert-dir", filepath.Join(cp.Dir, "apiserver-certs"),
			"--v", "1",
		}
		p, err := startProcess("kube-apiserver", argv, cp.Dir, filepath.Join(cp.Dir, "kube-apiserver.log"))
		if err != nil {
			return err
		}
		cp.Processes = append(cp.Processes, p)
		cp.Server = "https://127.0.0.1:" + strconv.Itoa(port)
		hdr := http.Header{"Authorization": {"Bearer " + cp.Token}}
		if lastErr = waitHTTPClient(ctx, p, hc, hdr, cp.Server+"/readyz", "ok", 120*time.Second); lastErr == nil {
			return nil
		}
		p.Stop(10 * time.Second)
		cp.Processes = cp.Processes[:len(cp.Processes)-1]
		if !strings.Contains(p.LogTail(4000), "address already in use") {
			break
		}
	}
	return lastErr
}

// httpClient trusts the API server's self-signed certificate.
func (cp *ControlPlane) httpClient() (*http.Client, error) {
	pool := x509.NewCertPool()
	pem, err := os.ReadFile(cp.CAFile)
	if err != nil {
		return nil, err
	}
	pool.AppendCertsFromPEM(pem)
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}, nil
}

// controllers are the controllers the test cluster runs: enough for
// namespaces to be deleted, to get their `default` service account, and
// for a node to be schedulable — the kubelet registers its node tainted
// node.kubernetes.io/not-ready:NoSchedule and the node lifecycle
// controller lifts the taint once the node is Ready (without it the
// scheduler leaves every pod Pending). No taint-eviction controller: a
// node that misses heartbeats on a loaded machine keeps its pods.
var controllers = []string{"namespace-controller", "serviceaccount-controller", "node-lifecycle-controller"}

// startControllerManager runs kube-controller-manager with the admin
// kubeconfig and no listener of its own, and waits until its
// service-account controller has made default/default.
func (cp *ControlPlane) startControllerManager(ctx context.Context, bin string) error {
	argv := []string{bin,
		"--kubeconfig", cp.Kubeconfig,
		"--controllers", strings.Join(controllers, ","),
		"--leader-elect=false",
		"--secure-port", "0",
		// The namespace controller sends about 80 requests per deleted
		// namespace (a list and a delete-collection per resource type);
		// at the default 20 requests a second it alone makes a
		// 100-instance teardown take minutes on an otherwise idle API
		// server.
		"--kube-api-qps", "200", "--kube-api-burst", "400",
		"--v", "1",
	}
	p, err := startProcess("kube-controller-manager", argv, cp.Kubeconfig, filepath.Join(cp.Dir, "kube-controller-manager.log"))
	if err != nil {
		return err
	}
	cp.Processes = append(cp.Processes, p)
	hc, err := cp.httpClient()
	if err != nil {
		return err
	}
	hdr := http.Header{"Authorization": {"Bearer " + cp.Token}}
	return waitHTTPClient(ctx, p, hc, hdr, cp.Server+"/api/v1/namespaces/default/serviceaccounts/default", `"name":"default"`, 120*time.Second)
}

// startScheduler runs kube-scheduler with the admin kubeconfig and no
// listener of its own; pods wait for it as they would on any cluster.
func (cp *ControlPlane) startScheduler(bin string) error {
	argv := []string{bin,
		"--kubeconfig", cp.Kubeconfig,
		"--leader-elect=false",
		"--secure-port", "0",
		"--kube-api-qps", "200", "--kube-api-burst", "400",
		"--v", "1",
	}
	p, err := startProcess("kube-scheduler", argv, cp.Kubeconfig, filepath.Join(cp.Dir, "kube-scheduler.log"))
	if err != nil {
		return err
	}
	cp.Processes = append(cp.Processes, p)
	return nil
}

// waitHTTP polls url until its body contains want, the process exits or
// the timeout passes.
func waitHTTP(ctx context.Context, p *Process, hdr http.Header, url, want string, timeout time.Duration) error {
	return waitHTTPClient(ctx, p, &http.Client{Timeout: 5 * time.Second}, hdr, url, want, timeout)
}

func waitHTTPClient(ctx context.Context, p *Process, hc *http.Client, hdr http.Header, url, want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		if resp, err := hc.Do(req); err == nil {
			body := make([]byte, 512)
			n, _ := resp.Body.Read(body)
			resp.Body.Close()
			last = fmt.Sprintf("HTTP %d %q", resp.StatusCode, body[:n])
			if resp.StatusCode == http.StatusOK && strings.Contains(string(body[:n]), want) {
				return nil
			}
		} else {
			last = err.Error()
		}
		if why := p.exited(); why != "" {
			return fmt.Errorf("kubetest: %s (pid %d) exited while starting (%s); its log (%s) ends:\n%s", p.Name, p.PID, why, p.Log, p.LogTail(3000))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("kubetest: %s not ready after %v (%s: %s); its log (%s) ends:\n%s", p.Name, timeout, url, last, p.Log, p.LogTail(3000))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// freePorts returns n distinct loopback TCP ports that were free a moment
// ago (all held open at once, so no two are the same), or nil.
func freePorts(n int) []int {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// RESTConfig is a client configuration for AdminUser with client-side rate
// limiting off (the API server's own flow control still applies).
func (cp *ControlPlane) RESTConfig() *rest.Config {
	return &rest.Config{
		Host:            cp.Server,
		BearerToken:     cp.Token,
		TLSClientConfig: rest.TLSClientConfig{CAFile: cp.CAFile},
		QPS:             -1,
	}
}

func (cp *ControlPlane) writeKubeconfig() error {
	const name = "endpointkit-test"
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters[name] = &clientcmdapi.Cluster{Server: cp.Server, CertificateAuthority: cp.CAFile}
	cfg.AuthInfos[name] = &clientcmdapi.AuthInfo{Token: cp.Token}
	cfg.Contexts[name] = &clientcmdapi.Context{Cluster: name, AuthInfo: name, Namespace: "default"}
	cfg.CurrentContext = name
	return clientcmd.WriteToFile(*cfg, cp.Kubeconfig)
}

func (cp *ControlPlane) save() error {
	raw, err := json.MarshalIndent(cp, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(cp.Dir, StateFile), raw, 0o600)
}

// Load reads the control plane recorded in dir (by StartControlPlane, maybe
// in another process).
func Load(dir string) (*ControlPlane, error) {
	raw, err := os.ReadFile(filepath.Join(dir, StateFile))
	if err != nil {
		return nil, err
	}
	var cp ControlPlane
	if err := json.Unmarshal(raw, &cp); err != nil {
		return nil, fmt.Errorf("kubetest: %s: %w", filepath.Join(dir, StateFile), err)
	}
	return &cp, nil
}

// Stop ends the processes (last started first) by PID and removes the
// directory and etcd's data. A node goes first, its pods deleted while
// the API server still answers (see Node). Safe to call twice.
func (cp *ControlPlane) Stop() error {
	var errs []error
	if cp.Node != nil {
		if err := cp.Node.stop(cp); err != nil {
			errs = append(errs, err)
		}
	}
	for i := len(cp.Processes) - 1; i >= 0; i-- {
		if err := cp.Processes[i].Stop(15 * time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...) // keep the files: the logs say why
	}
	if cp.EtcdDir != "" {
		os.RemoveAll(cp.EtcdDir)
	}
	return os.RemoveAll(cp.Dir)
}

// Stop stops the control plane recorded in dir. A directory without one is
// not an error.
func Stop(dir string) error {
	cp, err := Load(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return cp.Stop()
}
