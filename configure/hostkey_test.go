package configure

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/peertest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// debianPython is the interpreter with Debian's python3-paramiko and
// python3-netmiko (make deps); a python3 earlier on PATH may lack them.
const debianPython = "/usr/bin/python3"

// pyParamiko logs in with paramiko, trusting only the known_hosts file the
// python method gives (ANTIDOTE_TARGET_KNOWN_HOSTS).
const pyParamiko = `import os, paramiko
e = os.environ
c = paramiko.SSHClient()
c.load_host_keys(e["ANTIDOTE_TARGET_KNOWN_HOSTS"])
c.set_missing_host_key_policy(paramiko.RejectPolicy())
c.connect(e["ANTIDOTE_TARGET_HOST"], port=int(e["ANTIDOTE_TARGET_PORT"]), username=e["ANTIDOTE_TARGET_USERNAME"],
          password=e["ANTIDOTE_TARGET_PASSWORD"], look_for_keys=False, allow_agent=False)
_, out, _ = c.exec_command("echo logged-in")
print(out.read().decode().strip())
`

// pyNetmiko is a NAPALM-style script: netmiko, as NAPALM's drivers call it,
// with the known_hosts file the python method gives.
const pyNetmiko = `import os
from netmiko import ConnectHandler
e = os.environ
c = ConnectHandler(device_type="linux", host=e["ANTIDOTE_TARGET_HOST"], port=int(e["ANTIDOTE_TARGET_PORT"]),
                   username=e["ANTIDOTE_TARGET_USERNAME"], password=e["ANTIDOTE_TARGET_PASSWORD"],
                   ssh_strict=True, system_host_keys=False, alt_host_keys=True, alt_key_file=e["ANTIDOTE_TARGET_KNOWN_HOSTS"])
print(c.send_command("echo logged-in"))
`

// wrongKey is a host key the server does not have.
func wrongKey(t *testing.T) vmimage.HostKey {
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sp, _ := ssh.NewPublicKey(pub)
	return vmimage.HostKey{Type: sp.Type(), Fingerprint: ssh.FingerprintSHA256(sp), PublicKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sp)))}
}

// A wrong host key is refused on every path configuration takes to an
// endpoint — the ssh, netconf and ansible methods, a python script and a
// NAPALM-style (netmiko) script given the known_hosts file — and the right
// key is accepted on each (so the refusal is the key's doing); no policy at
// all is refused too.
func TestWrongHostKeyRefusedEverywhere(t *testing.T) {
	ektest.RequireTool(t, "ansible-playbook", "sshpass", debianPython)
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	sshFile := l.config(0, "r1.sh", "echo logged-in\n")
	playbook := l.config(0, "r1.yml", "- hosts: all\n  gather_facts: false\n  tasks:\n    - command: echo logged-in\n")
	paramikoFile := l.config(0, "r1.py", pyParamiko)
	netmikoFile := l.config(0, "r2.py", pyNetmiko)
	netconfFile := l.config(0, "r1.xml", "<config><system xmlns=\"urn:ietf:params:xml:ns:yang:ietf-system\"/></config>\n")
	py := &Python{Interpreter: debianPython}
	paths := []struct {
		name string
		c    Configurator
		sc   endpoint.StageConfig
		// refused says the error is the host key's (not some other
		// failure).
		refused func(err error, out string) bool
	}{
		{"ssh", &SSH{}, stage0(endpoint.MethodSSH, sshFile), func(err error, _ string) bool { return errors.Is(err, ErrHostKey) }},
		{"netconf", &Netconf{}, stage0(endpoint.MethodNetconf, netconfFile), func(err error, _ string) bool { return errors.Is(err, ErrHostKey) }},
		{"ansible", &Ansible{}, stage0(endpoint.MethodAnsible, playbook), func(err error, out string) bool {
			return strings.Contains(err.Error()+out, "REMOTE HOST IDENTIFICATION HAS CHANGED") || strings.Contains(err.Error()+out, "Host key verification failed")
		}},
		{"python (paramiko)", py, stage0(endpoint.MethodPython, paramikoFile), func(err error, out string) bool {
			return strings.Contains(err.Error()+out, "BadHostKeyException")
		}},
		{"napalm-style (netmiko)", py, stage0(endpoint.MethodPython, netmikoFile), func(err error, out string) bool {
			return strings.Contains(err.Error()+out, "BadHostKeyException") || strings.Contains(err.Error()+out, "does not match")
		}},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			ctx := ctxT(t, 2*time.Minute)
			tg := sshTarget("r1", s, u, l, p.sc)
			tg.NetconfPort = s.Port  // the handshake, where the key is checked, is the same
			if p.name != "netconf" { // a plain sshd has no netconf subsystem: only the refusal is shown
				rep, err := p.c.Configure(ctx, tg, p.sc)
				if err != nil || !strings.Contains(rep.Output, "logged-in") {
					t.Fatalf("right key: %v\n%s", err, rep.Output)
				}
			}
			bad := tg
			bad.HostKeys = HostKeyPolicy{Pinned: []vmimage.HostKey{wrongKey(t)}}
			rep, err := p.c.Configure(ctx, bad, p.sc)
			if err == nil || !p.refused(err, rep.Output) {
				t.Errorf("wrong key: %v\n%s", err, rep.Output)
			}
			none := tg
			none.HostKeys = HostKeyPolicy{}
			if _, err := p.c.Configure(ctx, none, p.sc); !errors.Is(err, ErrNoHostKeyPolicy) {
				t.Errorf("no policy: %v; want ErrNoHostKeyPolicy", err)
			}
		})
	}
}
