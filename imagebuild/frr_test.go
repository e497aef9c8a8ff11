package imagebuild_test

import (
	"bufio"
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/qemulaunch"
	"golang.org/x/crypto/ssh"
)

// TestFRRBoots: zebra, ospfd and bgpd run, and antidote (group frrvty)
// talks to them with vtysh over SSH.
func TestFRRBoots(t *testing.T) {
	im := imagetest.FRR(t)
	vm := imagetest.Boot(t, im, imagetest.BootOptions{DataNICs: 1})
	c := vm.SSH(t)
	var out string
	deadline := time.Now().Add(60 * time.Second)
	for { // the daemons start in parallel with sshd
		o, errOut, err := imagetest.Run(c, "pgrep -x zebra && pgrep -x ospfd && pgrep -x bgpd && vtysh -c 'show daemons'")
		out = o
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("FRR daemons: %v\n%s%s", err, o, errOut)
		}
		time.Sleep(time.Second)
	}
	for _, d := range []string{"zebra", "ospfd", "bgpd"} {
		if !strings.Contains(out, d) {
			t.Errorf("vtysh show daemons = %q; want %s", out, d)
		}
	}
	o, errOut, err := imagetest.Run(c, "vtysh -c 'configure terminal' -c 'router ospf' -c 'network 10.11.0.0/24 area 0' -c 'end' -c 'show running-config'")
	if err != nil || !strings.Contains(o, "network 10.11.0.0/24 area 0") {
		t.Errorf("configure OSPF as antidote: %v\n%s%s", err, o, errOut)
	}
	if o, _, _ := imagetest.Run(c, "cat /proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(o) != "1" {
		t.Errorf("ip_forward = %q; want 1", o)
	}
	runSelfTests(t, vm)
}

// TestNetconfBoots: sshd's netconf subsystem on port 830 reaches netconfd,
// which says hello.
func TestNetconfBoots(t *testing.T) {
	im := imagetest.Netconf(t)
	vm := imagetest.Boot(t, im, imagetest.BootOptions{ExtraForwards: []int{830}})
	addr := vm.Forwarded(830)
	cfg := imagetest.ClientConfig(im)
	var hello string
	deadline := time.Now().Add(3 * time.Minute) // margin for a loaded host
	for {
		h, err := netconfHello(addr, cfg)
		if err == nil {
			hello = h
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("netconf on %s: %v\nconsole:\n%s", addr, err, vm.Console())
		}
		time.Sleep(time.Second)
	}
	if !strings.Contains(hello, "urn:ietf:params:netconf:base:1.0") {
		t.Errorf("hello = %q", hello)
	}
	runSelfTests(t, vm)
}

// runSelfTests runs the image's self-tests in the booted VM.
func runSelfTests(t *testing.T, vm *imagetest.VM) {
	t.Helper()
	if len(vm.Image.Manifest.Tests) == 0 {
		t.Fatalf("image %s has no self-tests", vm.Image.Manifest.Slug)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	res, err := qemulaunch.RunSelfTests(ctx, vm.SSHAddr, vm.Image.Manifest)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		t.Logf("self-test %q passed in %s", r.Name, r.Elapsed.Round(time.Millisecond))
	}
}

func netconfHello(addr string, cfg *ssh.ClientConfig) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewClientConn(conn, addr, cfg)
	if err != nil {
		return "", err
	}
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		return "", err
	}
	defer s.Close()
	stdout, _ := s.StdoutPipe()
	if err := s.RequestSubsystem("netconf"); err != nil {
		return "", err
	}
	rd := bufio.NewReader(stdout)
	var b strings.Builder
	for !strings.Contains(b.String(), "]]>]]>") {
		line, err := rd.ReadString('>')
		b.WriteString(line)
		if err != nil {
			return b.String(), err
		}
	}
	return b.String(), nil
}

// TestFRRSlowStartKeepsConfig: watchfrr starts FRR's daemons with one
// background job ("restart all": each daemon in turn, then vtysh -b pushing
// frr.conf into all of them) and kills that job when it outlasts its
// restart timeout. On an emulated CPU shared with other guests the job
// takes longer than FRR's default 20 s, is killed before vtysh -b, and the
// daemons run without the configuration — zebra without interface
// addresses, so OSPF never speaks on the links while `systemctl restart
// frr` reported success (seen as a frr-ospf router missing from its
// neighbours' lists). Here every daemon takes 7 s more to start, as on a
// loaded host; the image's watchfrr must let the job finish, and after the
// restart enp0s3f1 (its first data NIC) carries frr.conf's address and runs OSPF.
func TestFRRSlowStartKeepsConfig(t *testing.T) {
	im := imagetest.FRR(t)
	vm := imagetest.Boot(t, im, imagetest.BootOptions{DataNICs: 1})
	c := vm.SSH(t)
	imagetest.MustRun(t, c, `set -e
sudo sh -c 'echo "all_wrap=\"sleep 7;\"" >> /etc/frr/daemons'
printf '%s\n' 'frr defaults traditional' 'service integrated-vtysh-config' \
	'interface enp0s3f1' ' ip address 10.98.0.1/24' ' ip ospf network point-to-point' \
	'router ospf' ' network 10.98.0.0/24 area 0' > /tmp/frr.conf
sudo install -m 0640 -o frr -g frr /tmp/frr.conf /etc/frr/frr.conf
sudo ip link set enp0s3f1 up
sudo systemctl restart frr`)
	var out string
	deadline := time.Now().Add(3 * time.Minute)
	for {
		o, _, err := imagetest.Run(c, "ip -4 -o addr show dev enp0s3f1; vtysh -c 'show ip ospf interface enp0s3f1'")
		out = o
		if err == nil && strings.Contains(o, "inet 10.98.0.1/24") && strings.Contains(o, "Area 0.0.0.0") {
			break
		}
		if time.Now().After(deadline) {
			log, _, _ := imagetest.Run(c, "sudo journalctl -b -u frr -o short-monotonic --no-pager | grep -E 'Stopping|Started|still running|terminated|Failed|Cannot'")
			t.Fatalf("after a slow FRR restart, enp0s3f1 lacks frr.conf's address or OSPF:\n%s\nwatchfrr:\n%s", out, log)
		}
		time.Sleep(2 * time.Second)
	}
}

// TestFRRCompatDropsSysrepo: the frr image's frr-compat runs an FRR daemon
// with the options of an FRR 7.2-era daemons file minus "-M sysrepo" (in
// each spelling), keeping every other option and module as given, and
// says what it dropped.
func TestFRRCompatDropsSysrepo(t *testing.T) {
	dir := t.TempDir()
	show := filepath.Join(dir, "zebra")
	if err := os.WriteFile(show, []byte("#!/bin/sh\nfor a; do echo \"[$a]\"; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", filepath.Join("..", "examples", "images", "frr", "files", "frr-compat"), show,
		"-d", "-F", "traditional", "-M", "sysrepo", "-A", "127.0.0.1", "-s", "90000000", "-M", "fpm:protobuf",
		"--module", "sysrepo:x", "-Msysrepo", "--module=sysrepo", "with space")
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("frr-compat: %v\n%s", err, stderr.String())
	}
	want := "[-d]\n[-F]\n[traditional]\n[-A]\n[127.0.0.1]\n[-s]\n[90000000]\n[-M]\n[fpm:protobuf]\n[with space]\n"
	if stdout.String() != want {
		t.Errorf("the daemon got\n%s\nwant\n%s", stdout.String(), want)
	}
	if n := strings.Count(stderr.String(), `frr-compat: zebra: ignoring "`); n != 4 ||
		!strings.Contains(stderr.String(), `ignoring "-M sysrepo": Debian's FRR has no sysrepo module`) {
		t.Errorf("stderr (want 4 notes):\n%s", stderr.String())
	}
}
