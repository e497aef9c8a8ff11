package configure

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/peertest"
)

// copyAndCheck is the benchmark's task: copy a file from the lesson into
// remote/<endpoint>/ and run a command on it.
func copyAndCheck(remote string) ConfiguratorFunc {
	return func(ctx context.Context, t Target, sc endpoint.StageConfig) (Report, error) {
		return copyAndCheckTo(ctx, t, remote+"/"+t.Name+"/payload.txt")
	}
}

func copyAndCheckTo(ctx context.Context, t Target, dst string) (Report, error) {
	c, err := DialSSH(ctx, t, DialOptions{})
	if err != nil {
		return Report{}, err
	}
	defer c.Close()
	if err := c.Copy(ctx, t.LessonDir, FileCopy{Src: "stage0/configs/files/payload.txt", Dst: dst}); err != nil {
		return Report{}, err
	}
	r, err := c.Run(ctx, "sha256sum "+dst)
	return Report{Output: r.Output}, err
}

// BenchmarkFanout20 compares configuring 20 SSH endpoints with Run against
// one endpoint and against ansible-playbook -f 20 doing the same task
// (copy a 4 KiB file, run sha256sum on it). Each endpoint is its own sshd
// on loopback (as 20 VMs would be), all sharing this machine's CPUs with
// the client; ansible and endpointkit use the same key, inventory of
// hosts and known_hosts, and ansible keeps its defaults (ssh
// ControlPersist, pipelining off) with fact gathering off.
func BenchmarkFanout20(b *testing.B) {
	ektest.RequireTool(b, "ansible-playbook")
	const n = 20
	u := peertest.NewUser(b)
	l := &lesson{dir: b.TempDir()}
	payload := strings.Repeat("endpointkit benchmark payload\n", 140)
	for _, p := range []string{"stage0/configs/files", "ansible"} {
		os.MkdirAll(filepath.Join(l.dir, p), 0o755)
	}
	os.WriteFile(filepath.Join(l.dir, "stage0/configs/files/payload.txt"), []byte(payload), 0o644)
	os.Chmod(l.dir, 0o755)
	remote := filepath.Join(os.TempDir(), ektest.Name("ektbench"))
	b.Cleanup(func() { os.RemoveAll(remote) })

	var targets []Target
	var sshdPIDs []int
	var inv, known strings.Builder
	inv.WriteString("all:\n  hosts:\n")
	for i := 0; i < n; i++ {
		s := peertest.StartSSHD(b, peertest.SSHDConfig{Users: []*peertest.User{u}})
		name := fmt.Sprintf("ep%02d", i)
		sshdPIDs = append(sshdPIDs, s.PID())
		targets = append(targets, Target{Name: name, Address: s.Host, Port: s.Port, User: u.Name, KeyFile: u.KeyFile,
			HostKeys: HostKeyPolicy{Pinned: s.HostKeys}, LessonDir: l.dir,
			Stages: []endpoint.StageConfig{{Method: endpoint.MethodSSH, File: filepath.Join(l.dir, "stage0/configs/files/payload.txt")}}})
		fmt.Fprintf(&inv, "    %s:\n      ansible_host: %s\n      ansible_port: %d\n", name, s.Host, s.Port)
		raw, _ := os.ReadFile(s.KnownHosts)
		known.Write(raw)
	}
	adir := filepath.Join(l.dir, "ansible")
	fmt.Fprintf(&inv, "  vars:\n    ansible_user: %s\n    ansible_ssh_private_key_file: %s\n    ansible_python_interpreter: /usr/bin/python3\n", u.Name, u.KeyFile)
	fmt.Fprintf(&inv, "    ansible_ssh_common_args: -o StrictHostKeyChecking=yes -o UserKnownHostsFile=%s/known_hosts\n", adir)
	os.WriteFile(filepath.Join(adir, "inventory.yml"), []byte(inv.String()), 0o600)
	os.WriteFile(filepath.Join(adir, "known_hosts"), []byte(known.String()), 0o600)
	os.WriteFile(filepath.Join(adir, "site.yml"), []byte(`- hosts: all
  gather_facts: no
  tasks:
    - name: copy
      copy:
        src: `+filepath.Join(l.dir, "stage0/configs/files/payload.txt")+`
        dest: `+remote+`/{{ inventory_hostname }}/ansible-payload.txt
    - name: check
      command: sha256sum `+remote+`/{{ inventory_hostname }}/ansible-payload.txt
`), 0o644)
	os.MkdirAll(filepath.Join(adir, "cp"), 0o700)
	b.Cleanup(func() { closeControlMasters(filepath.Join(adir, "cp")) })
	for _, t := range targets { // ansible's copy module does not create parents
		os.MkdirAll(filepath.Join(remote, t.Name), 0o755)
		os.Chown(filepath.Join(remote, t.Name), u.UID, u.GID)
	}

	opts := Options{Concurrency: n, Configurators: map[endpoint.Method]Configurator{endpoint.MethodSSH: copyAndCheck(remote)}}
	run := func(ts []Target) time.Duration {
		start := time.Now()
		for _, r := range Run(context.Background(), 0, ts, opts) {
			if !r.OK {
				b.Fatalf("%s: %v", r.Endpoint, r.Err)
			}
		}
		return time.Since(start)
	}
	ansible := func() time.Duration {
		cmd := exec.Command("ansible-playbook", "-f", fmt.Sprint(n), "-i", filepath.Join(adir, "inventory.yml"), filepath.Join(adir, "site.yml"))
		cmd.Env = append(os.Environ(), "ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(adir, "cp"), "ANSIBLE_HOST_KEY_CHECKING=True", "ANSIBLE_NOCOLOR=1")
		start := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("ansible-playbook: %v\n%s", err, out)
		}
		return time.Since(start)
	}
	run(targets) // warm up: page cache, sshd binaries
	var one, fan, ans, cpu, client time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		c0, s0 := cpuUsed(sshdPIDs)
		fan += run(targets)
		c1, s1 := cpuUsed(sshdPIDs)
		cpu += c1 - c0 + s1 - s0
		client += c1 - c0
		b.StopTimer()
		one += run(targets[:1])
		ans += ansible()
		b.StartTimer()
	}
	b.ReportMetric(float64(fan.Milliseconds())/float64(b.N), "ms-20-endpoints")
	b.ReportMetric(float64(one.Milliseconds())/float64(b.N), "ms-1-endpoint")
	b.ReportMetric(float64(ans.Milliseconds())/float64(b.N), "ms-ansible-f20")
	b.ReportMetric(float64(fan)/float64(one), "x-vs-one")
	b.ReportMetric(float64(ans)/float64(fan), "x-vs-ansible")
	// The CPU the 20 endpoints cost (client and sshd side) bounds the
	// fan-out when the peers share this machine's CPUs: x-cpu-floor is
	// the smallest x-vs-one this host could show.
	perEP := cpu / time.Duration(b.N*n)
	b.ReportMetric(float64(perEP.Microseconds())/1000, "cpu-ms/endpoint")
	b.ReportMetric(float64((client/time.Duration(b.N*n)).Microseconds())/1000, "client-cpu-ms/endpoint")
	floor := float64(perEP*n) / float64(runtime.NumCPU()) / (float64(one) / float64(b.N))
	b.ReportMetric(max(1, floor), "x-cpu-floor")
}

// cpuUsed returns this process's CPU time, and that of the finished
// children of the given sshd listeners (their per-connection processes).
func cpuUsed(sshds []int) (client, server time.Duration) {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	client = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	for _, pid := range sshds {
		raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		f := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
		// Fields after the command: cutime and cstime are the 14th and
		// 15th (stat fields 16 and 17), in clock ticks of 10 ms.
		cu, _ := strconv.Atoi(f[13])
		cs, _ := strconv.Atoi(f[14])
		server += time.Duration(cu+cs) * 10 * time.Millisecond
	}
	return client, server
}
