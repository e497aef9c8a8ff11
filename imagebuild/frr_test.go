package imagebuild_test

import (
	"bufio"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/imagetest"
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
}

// TestNetconfBoots: sshd's netconf subsystem on port 830 reaches netconfd,
// which says hello.
func TestNetconfBoots(t *testing.T) {
	im := imagetest.Netconf(t)
	vm := imagetest.Boot(t, im, imagetest.BootOptions{ExtraForwards: []int{830}})
	addr := vm.Forwarded(830)
	cfg := imagetest.ClientConfig(im)
	var hello string
	deadline := time.Now().Add(60 * time.Second)
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
