package containerdtest

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
)

// K8sNamespace is the containerd namespace the CRI plugin (and so a
// kubelet) keeps its images, containers and tasks in.
const K8sNamespace = "k8s.io"

// CRIPlugin is containerd's CRI plugin; it is disabled unless
// [Options.CRI] is set.
const CRIPlugin = "io.containerd.grpc.v1.cri"

// CRI configures containerd's CRI plugin, for a kubelet to use the daemon as
// its container runtime. restrict_oom_score_adj is always on: root here
// lacks CAP_SYS_RESOURCE, and without it every pod sandbox fails in runc
// ("can't get final child's PID from pipe: EOF").
type CRI struct {
	// SandboxImage is the pod sandbox ("pause") image reference. containerd
	// pulls it when missing, so a test imports it into K8sNamespace (or
	// pushes it to a registry the daemon may reach) first. Required.
	SandboxImage string
	// CNIBinDir and CNIConfDir are the CNI plugin and configuration
	// directories (defaults /usr/lib/cni and DIR/cni/net.d).
	CNIBinDir, CNIConfDir string
	// RegistryConfigDir is a hosts.toml tree (certs.d layout:
	// DIR/HOST:PORT/hosts.toml) telling the CRI plugin how to reach
	// registries, e.g. a plain-HTTP loopback one; see [HostsTOML].
	RegistryConfigDir string
}

// Paths are where one daemon keeps its files; all inside [Daemon.Dir].
type Paths struct {
	Root, State, Address, Config, Log string
}

// PathsIn returns the layout of a daemon whose directory is dir.
func PathsIn(dir string) Paths {
	return Paths{
		Root:    filepath.Join(dir, "root"),
		State:   filepath.Join(dir, "state"),
		Address: filepath.Join(dir, "containerd.sock"),
		Config:  filepath.Join(dir, "config.toml"),
		Log:     filepath.Join(dir, "containerd.log"),
	}
}

// Config renders the containerd (1.6, config version 2) configuration of
// a daemon with paths p: its own root, state, socket and opt directory, no
// TCP listeners (debug, metrics, CRI streaming on a random loopback port),
// and the CRI plugin configured by cri or disabled when cri is nil.
// extra is appended verbatim (more TOML tables).
func Config(p Paths, snapshotter string, cri *CRI, extra string) string {
	if snapshotter == "" {
		snapshotter = "overlayfs"
	}
	var b strings.Builder
	q := strconv.Quote
	fmt.Fprintf(&b, "version = 2\nroot = %s\nstate = %s\noom_score = 0\n", q(p.Root), q(p.State))
	// Snapshotters that need kernel features or tools this machine lacks
	// only log errors at start-up; leaving them out keeps the log readable.
	disabled := []string{"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs",
		"io.containerd.snapshotter.v1.devmapper", "io.containerd.snapshotter.v1.zfs"}
	if cri == nil {
		disabled = append(disabled, CRIPlugin)
	}
	for i := range disabled {
		disabled[i] = q(disabled[i])
	}
	fmt.Fprintf(&b, "disabled_plugins = [%s]\n\n", strings.Join(disabled, ", "))
	fmt.Fprintf(&b, "[grpc]\n  address = %s\n\n[ttrpc]\n  address = %s\n\n", q(p.Address), q(p.Address+".ttrpc"))
	b.WriteString("[debug]\n  address = \"\"\n  level = \"info\"\n\n[metrics]\n  address = \"\"\n\n")
	fmt.Fprintf(&b, "[plugins]\n  [plugins.\"io.containerd.internal.v1.opt\"]\n    path = %s\n", q(filepath.Join(p.Root, "opt")))
	if cri != nil {
		binDir, confDir := cri.CNIBinDir, cri.CNIConfDir
		if binDir == "" {
			binDir = "/usr/lib/cni"
		}
		if confDir == "" {
			confDir = filepath.Join(filepath.Dir(p.Root), "cni", "net.d")
		}
		fmt.Fprintf(&b, "  [plugins.%s]\n", q(CRIPlugin))
		fmt.Fprintf(&b, "    sandbox_image = %s\n", q(cri.SandboxImage))
		b.WriteString("    restrict_oom_score_adj = true\n")
		b.WriteString("    stream_server_address = \"127.0.0.1\"\n    stream_server_port = \"0\"\n")
		b.WriteString("    disable_tcp_service = true\n    enable_selinux = false\n    systemd_cgroup = false\n")
		fmt.Fprintf(&b, "    [plugins.%s.containerd]\n      snapshotter = %s\n      default_runtime_name = \"runc\"\n", q(CRIPlugin), q(snapshotter))
		fmt.Fprintf(&b, "      [plugins.%s.containerd.runtimes.runc]\n        runtime_type = \"io.containerd.runc.v2\"\n", q(CRIPlugin))
		fmt.Fprintf(&b, "    [plugins.%s.cni]\n      bin_dir = %s\n      conf_dir = %s\n", q(CRIPlugin), q(binDir), q(confDir))
		if cri.RegistryConfigDir != "" {
			fmt.Fprintf(&b, "    [plugins.%s.registry]\n      config_path = %s\n", q(CRIPlugin), q(cri.RegistryConfigDir))
		}
	}
	if extra != "" {
		b.WriteString("\n" + extra + "\n")
	}
	return b.String()
}

// HostsTOML is the hosts.toml of a registry at host (HOST:PORT) for
// containerd's registry config_path: plain HTTP when caFile is "", else
// HTTPS trusting the CA in caFile. Write it to DIR/HOST:PORT/hosts.toml.
func HostsTOML(host, caFile string) string {
	scheme := "https"
	if caFile == "" {
		scheme = "http"
	}
	s := fmt.Sprintf("server = %q\n\n[host.%q]\n  capabilities = [\"pull\", \"resolve\", \"push\"]\n",
		scheme+"://"+host, scheme+"://"+host)
	if caFile != "" {
		s += fmt.Sprintf("  ca = %q\n", caFile)
	}
	return s
}
