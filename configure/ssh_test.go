package configure

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/peertest"
	"github.com/endpointkit/endpointkit/vmimage"
	"github.com/vishvananda/netlink"
)

func TestSSHScriptPerCommandResults(t *testing.T) {
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	marker := "/tmp/" + ektest.Name("ektssh")
	t.Cleanup(func() { os.Remove(marker) })
	ok := l.config(0, "r1.sh", "# configure r1\necho hello\nsudo touch "+marker+"\nid -un\n")
	res, err := (&SSH{}).Configure(ctxT(t, 30*time.Second), sshTarget("r1", s, u, l), stage0(endpoint.MethodSSH, ok))
	if err != nil {
		t.Fatalf("Configure: %v\n%s", err, res.Output)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatalf("sudo touch did not run on the target: %v", err)
	}
	if len(res.Steps) != 3 {
		t.Fatalf("steps = %+v; want 3 commands", res.Steps)
	}
	if st := res.Steps[0]; st.Line != 2 || st.Name != "echo hello" || st.Output != "hello" || !st.OK {
		t.Errorf("step 0 = %+v", st)
	}
	if st := res.Steps[2]; st.Line != 4 || st.Output != u.Name {
		t.Errorf("step 2 = %+v; want line 4 output %s", st, u.Name)
	}

	bad := l.config(0, "r2.sh", "echo before\nfalse\necho never\n")
	res, err = (&SSH{}).Configure(ctxT(t, 30*time.Second), sshTarget("r2", s, u, l), stage0(endpoint.MethodSSH, bad))
	var ee *ExitError
	if !errors.As(err, &ee) || ee.Line != 2 || ee.Status != 1 || ee.Command != bad {
		t.Fatalf("err = %#v; want ExitError at %s:2 status 1", err, bad)
	}
	if !strings.Contains(err.Error(), bad+":2: exited with status 1") {
		t.Errorf("error text %q does not name the file and line", err)
	}
	if strings.Contains(res.Output, "never") {
		t.Errorf("the script went on after a failure: %q", res.Output)
	}
}

func TestSSHClientLinuxOperations(t *testing.T) {
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}, Isolate: true})
	l := newLesson(t)
	l.config(1, "files/motd", "welcome\n")
	ctx := ctxT(t, 60*time.Second)
	c, err := DialSSH(ctx, sshTarget("linux1", s, u, l), DialOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	dst := u.Home + "/lesson/etc/motd"
	if err := c.Copy(ctx, l.dir, FileCopy{Src: "stage1/configs/files/motd", Dst: dst, Mode: 0o640}); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	st, err := os.Stat(dst)
	if err != nil || st.Mode().Perm() != 0o640 {
		t.Fatalf("copied file: %v %v", st, err)
	}
	if raw, _ := os.ReadFile(dst); string(raw) != "welcome\n" {
		t.Fatalf("copied content %q", raw)
	}
	if err := c.Copy(ctx, l.dir, FileCopy{Src: "../etc/passwd", Dst: "/tmp/x"}); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("copy escaping the lesson dir: err = %v; want ErrBadConfig", err)
	}

	host, _ := os.Hostname()
	if err := c.SetHostname(ctx, "linux1-ekt"); err != nil {
		t.Fatalf("SetHostname: %v", err)
	}
	if r, _ := c.Run(ctx, "hostname"); strings.TrimSpace(r.Output) != "linux1-ekt" {
		t.Fatalf("hostname on the target = %q", r.Output)
	}
	if raw, _ := os.ReadFile(s.HostnameFile); strings.TrimSpace(string(raw)) != "linux1-ekt" {
		t.Fatalf("/etc/hostname on the target = %q", raw)
	}
	if now, _ := os.Hostname(); now != host {
		t.Fatalf("the test machine's hostname changed")
	}
	if err := c.SetHostname(ctx, "bad name;rm -rf /"); !errors.Is(err, ErrBadConfig) {
		t.Fatalf("bad hostname: %v", err)
	}

	if err := c.RestartService(ctx, "ektsvc"); err != nil {
		t.Fatalf("RestartService: %v", err)
	}
	if raw, _ := os.ReadFile(s.InitDir + "/ektsvc.log"); strings.TrimSpace(string(raw)) != "restart" {
		t.Fatalf("service log = %q", raw)
	}
	var ee *ExitError
	if err := c.RestartService(ctx, "ekt-no-such-service"); !errors.As(err, &ee) {
		t.Fatalf("restarting a missing service: %v", err)
	}

	// A veth pair of our own (the sshd shares the host's network namespace).
	a, b := ektest.Name("ekta"), ektest.Name("ektb")
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: netlink.LinkAttrs{Name: a}, PeerName: b}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(a); err == nil {
			netlink.LinkDel(l)
		}
		ektest.AssertClean(t, "ekta")
	})
	pfx := netip.MustParsePrefix("198.18.77.1/30")
	if err := c.SetAddress(ctx, a, pfx); err != nil {
		t.Fatalf("SetAddress: %v", err)
	}
	link, _ := netlink.LinkByName(a)
	addrs, _ := netlink.AddrList(link, netlink.FAMILY_V4)
	if len(addrs) != 1 || addrs[0].IPNet.String() != "198.18.77.1/30" || link.Attrs().Flags&net.FlagUp == 0 {
		t.Fatalf("link %s: addrs %v flags %v", a, addrs, link.Attrs().Flags)
	}
}

func TestHostKeyPolicyAndAuth(t *testing.T) {
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	ctx := ctxT(t, 60*time.Second)
	base := sshTarget("r1", s, u, l)

	try := func(name string, mod func(*Target)) error {
		tg := base
		mod(&tg)
		c, err := DialSSH(ctx, tg, DialOptions{Attempts: 1})
		if err == nil {
			c.Close()
		}
		t.Logf("%s: %v", name, err)
		return err
	}
	if err := try("pinned", func(*Target) {}); err != nil {
		t.Errorf("pinned keys: %v", err)
	}
	if err := try("pinned ecdsa only", func(tg *Target) { tg.HostKeys.Pinned = s.HostKeys[:1] }); err != nil {
		t.Errorf("one pinned key (the server must be asked for that type): %v", err)
	}
	if err := try("known_hosts", func(tg *Target) { tg.HostKeys = HostKeyPolicy{KnownHostsFile: s.KnownHosts} }); err != nil {
		t.Errorf("known_hosts: %v", err)
	}
	if err := try("insecure", func(tg *Target) { tg.HostKeys = HostKeyPolicy{InsecureIgnore: true} }); err != nil {
		t.Errorf("insecure opt-in: %v", err)
	}
	if err := try("key", func(tg *Target) { tg.Password, tg.KeyFile = "", u.KeyFile }); err != nil {
		t.Errorf("key auth: %v", err)
	}
	err := try("mismatch", func(tg *Target) {
		tg.HostKeys.Pinned = []vmimage.HostKey{{Type: "ssh-ed25519", Fingerprint: "SHA256:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"}}
	})
	var hk *HostKeyError
	if !errors.As(err, &hk) || !errors.Is(err, ErrHostKey) || !strings.HasPrefix(hk.Got, "ssh-ed25519 SHA256:") {
		t.Errorf("host-key mismatch: err = %v; want *HostKeyError", err)
	}
	other := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	if err := try("known_hosts of another host", func(tg *Target) { tg.HostKeys = HostKeyPolicy{KnownHostsFile: other.KnownHosts} }); !errors.Is(err, ErrHostKey) {
		t.Errorf("unknown host in known_hosts: err = %v; want ErrHostKey", err)
	}
	if err := try("no policy", func(tg *Target) { tg.HostKeys = HostKeyPolicy{} }); !errors.Is(err, ErrNoHostKeyPolicy) {
		t.Errorf("no policy: err = %v; want ErrNoHostKeyPolicy", err)
	}
	err = try("wrong password", func(tg *Target) { tg.Password = "wrong-" + Secret(u.Password) })
	if !errors.Is(err, ErrAuth) {
		t.Errorf("wrong password: err = %v; want ErrAuth", err)
	}
	noSecret(t, u.Password, fmt.Sprint(err), fmt.Sprintf("%+v %#v", base, base))
}

func TestWaitReachable(t *testing.T) {
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	ctx := ctxT(t, 60*time.Second)
	if err := WaitReachable(ctx, s.Addr(), ReachOptions{Timeout: 10 * time.Second}); err != nil {
		t.Fatalf("running sshd: %v", err)
	}

	// A port that accepts TCP but never speaks SSH (like QEMU's hostfwd
	// before the guest is up) is not reachable.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	start := time.Now()
	err = WaitReachable(ctx, l.Addr().String(), ReachOptions{Timeout: 1500 * time.Millisecond, Attempt: 300 * time.Millisecond, Scale: 1.5})
	el := time.Since(start)
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("silent port: err = %v; want ErrUnreachable", err)
	}
	if el < 2*time.Second || el > 4*time.Second {
		t.Errorf("waited %s; want about 1.5s × 1.5", el)
	}

	// Listening later: the wait succeeds once sshd is there.
	free, _ := net.Listen("tcp", "127.0.0.1:0")
	addr := free.Addr().String()
	free.Close()
	start = time.Now()
	err = WaitReachable(ctx, addr, ReachOptions{Timeout: 1 * time.Second})
	if !errors.Is(err, ErrUnreachable) || time.Since(start) > 3*time.Second {
		t.Fatalf("closed port: err = %v after %s", err, time.Since(start))
	}
}

func TestSplitScriptOutput(t *testing.T) {
	n := "@@nonce"
	out := n + " 2 0\nhello\n\n" + n + " 3 0\n\n" + n + " 4 0\nboom\n"
	got := splitScriptOutput(out, n, 7, []byte("a\nb\nc\n"))
	if len(got) != 3 || got[0].Line != 1 || got[0].Command != "a" || got[0].Output != "hello" || got[2].Status != 7 || got[2].Output != "boom" || got[1].Status != 0 {
		t.Fatalf("got %+v", got)
	}
	if got := splitScriptOutput("plain sh\n", n, 3, nil); len(got) != 1 || got[0].Status != 3 {
		t.Fatalf("no markers: %+v", got)
	}
}

func FuzzSplitScriptOutput(f *testing.F) {
	f.Add("@@n 2 0\nx\n@@n 99 1\n", "a\nb\n", 1)
	f.Add("@@n -5 x\n@@n 1\n", "", 0)
	f.Fuzz(func(t *testing.T, out, script string, exit int) {
		res := splitScriptOutput(out, "@@n", exit, []byte(script))
		if len(res) == 0 {
			t.Fatal("no results")
		}
		if res[len(res)-1].Status != exit {
			t.Fatalf("last status %d; want the exit status %d", res[len(res)-1].Status, exit)
		}
	})
}

func TestSSHScriptDeadline(t *testing.T) {
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	tag := fmt.Sprintf("%d.%d", 290+time.Now().Nanosecond()%9, time.Now().Nanosecond()%1000)
	file := l.config(0, "slow.sh", "echo started\nsleep "+tag+"\n")
	start := time.Now()
	_, err := (&SSH{}).Configure(ctxT(t, 2*time.Second), sshTarget("slow", s, u, l), stage0(endpoint.MethodSSH, file))
	if err == nil || time.Since(start) > 10*time.Second {
		t.Fatalf("err = %v after %s; want a deadline error after ~2s", err, time.Since(start))
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids, _ := ektest.ProcessesMatching("sleep " + tag)
		if len(pids) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the script's command still runs on the target after the deadline: pids %v", pids)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
