package configure

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/peertest"
	"github.com/endpointkit/endpointkit/vmimage"
)

const playbookOK = `---
- name: configure linux1
  hosts: all
  gather_facts: no
  tasks:
    - name: copy the banner
      copy:
        src: files/banner.txt
        dest: "{{ dest }}"
    - name: read it back
      command: cat {{ dest }}
    - name: become root
      become: true
      command: id -u
`

const playbookFail = `---
- name: configure linux2
  hosts: all
  gather_facts: no
  tasks:
    - name: harmless
      command: "true"
    - name: break things
      command: /bin/false
    - name: never reached
      command: "true"
`

// scanCmdlines records every process command line containing secret until
// stop is closed.
func scanCmdlines(secret string, stop <-chan struct{}) func() []string {
	var mu sync.Mutex
	var hits []string
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			ents, _ := os.ReadDir("/proc")
			for _, e := range ents {
				raw, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				if err == nil && strings.Contains(string(raw), secret) {
					mu.Lock()
					hits = append(hits, strings.ReplaceAll(string(raw), "\x00", " "))
					mu.Unlock()
				}
			}
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	return func() []string { <-done; mu.Lock(); defer mu.Unlock(); return hits }
}

func TestAnsiblePlaybook(t *testing.T) {
	ektest.RequireTool(t, "ansible-playbook", "sshpass")
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	l.config(0, "files/banner.txt", "hello from stage 0\n")
	dest := filepath.Join(u.Home, "banner.txt")
	book := l.config(0, "linux1.yml", strings.Replace(playbookOK, "{{ dest }}", dest, -1))
	tg := sshTarget("linux1", s, u, l, stage0(endpoint.MethodAnsible, book))

	stop := make(chan struct{})
	leaks := scanCmdlines(u.Password, stop)
	rep, err := (&Ansible{}).Configure(ctxT(t, 120*time.Second), tg, tg.Stages[0])
	close(stop)
	if err != nil {
		t.Fatalf("Configure: %v\n%s", err, rep.Output)
	}
	if hits := leaks(); len(hits) > 0 {
		t.Errorf("password visible in process listings: %q", hits)
	}
	if raw, _ := os.ReadFile(dest); string(raw) != "hello from stage 0\n" {
		t.Fatalf("copied file = %q", raw)
	}
	if len(rep.Steps) != 3 || rep.Steps[0].Name != "copy the banner" || !rep.Steps[0].Changed ||
		rep.Steps[1].Output != "hello from stage 0" || rep.Steps[2].Output != "0" {
		t.Fatalf("steps = %+v", rep.Steps)
	}
	noSecret(t, u.Password, rep.Output)

	// Pinned keys without their public halves: fetched and verified.
	tg.HostKeys.Pinned = []vmimage.HostKey{{Type: s.HostKeys[1].Type, Fingerprint: s.HostKeys[1].Fingerprint}}
	if _, err := (&Ansible{}).Configure(ctxT(t, 120*time.Second), tg, tg.Stages[0]); err != nil {
		t.Fatalf("fingerprint-only pin: %v", err)
	}

	// Another server's keys: ssh refuses the host; the task is unreachable.
	other := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	tg.HostKeys.Pinned = other.HostKeys
	_, err = (&Ansible{}).Configure(ctxT(t, 120*time.Second), tg, tg.Stages[0])
	var te *TaskError
	if !errors.As(err, &te) || !te.Unreachable {
		t.Fatalf("wrong pinned keys: err = %v; want an unreachable task", err)
	}
	if !strings.Contains(te.Message, "Host key verification failed") {
		t.Errorf("message %q does not say why", te.Message)
	}
	tg.HostKeys.Pinned = s.HostKeys[:1]
	tg.HostKeys.Pinned[0].Fingerprint = other.HostKeys[0].Fingerprint
	if _, err := (&Ansible{}).Configure(ctxT(t, 60*time.Second), tg, tg.Stages[0]); !errors.Is(err, ErrBadConfig) {
		t.Errorf("a pinned public key that does not match its fingerprint: err = %v", err)
	}
}

func TestAnsibleFailuresNamed(t *testing.T) {
	ektest.RequireTool(t, "ansible-playbook", "sshpass")
	u := peertest.NewUser(t)
	s := peertest.StartSSHD(t, peertest.SSHDConfig{Users: []*peertest.User{u}})
	l := newLesson(t)
	ctx := ctxT(t, 120*time.Second)

	book := l.config(0, "linux2.yml", playbookFail)
	tg := sshTarget("linux2", s, u, l, stage0(endpoint.MethodAnsible, book))
	rep, err := (&Ansible{}).Configure(ctx, tg, tg.Stages[0])
	var te *TaskError
	if !errors.As(err, &te) || te.Task != "break things" || te.Play != "configure linux2" || te.Host != "linux2" || te.Unreachable {
		t.Fatalf("err = %v; want the failed task named", err)
	}
	if !strings.Contains(err.Error(), book+`: play "configure linux2" task "break things" failed on linux2`) {
		t.Errorf("error text: %v", err)
	}
	if len(rep.Steps) != 2 || !rep.Steps[0].OK || rep.Steps[1].OK || rep.Steps[1].Status != 1 {
		t.Errorf("steps = %+v", rep.Steps)
	}

	syntax := l.config(0, "linux3.yml", "- name: p\n  hosts: all\n  tasks:\n    - name: t\n      command: [unterminated\n")
	tg.Stages[0].File = syntax
	_, err = (&Ansible{}).Configure(ctx, tg, tg.Stages[0])
	if !errors.Is(err, ErrBadConfig) || !strings.Contains(err.Error(), syntax+":") {
		t.Errorf("syntax error: err = %v; want ErrBadConfig naming %s:LINE:COL", err, syntax)
	}

	tg.Password = "wrong"
	tg.Stages[0].File = book
	_, err = (&Ansible{}).Configure(ctx, tg, tg.Stages[0])
	if !errors.As(err, &te) || !te.Unreachable {
		t.Errorf("wrong password: err = %v; want an unreachable task", err)
	}
	noSecret(t, u.Password, err.Error())
}

func TestAnsibleInventoryQuoting(t *testing.T) {
	tg := Target{Name: "r1", Address: "10.0.0.1", User: "antidote", Password: `p"w{{ lookup('x') }}`, KeyFile: "/k"}
	inv := ansibleInventory(tg, "-o A=b")
	for _, want := range []string{`"r1":`, `ansible_host: "10.0.0.1"`, `ansible_port: 22`, `ansible_password: !unsafe "p\"w{{ lookup('x') }}"`, `ansible_ssh_private_key_file: "/k"`} {
		if !strings.Contains(inv, want) {
			t.Errorf("inventory lacks %s:\n%s", want, inv)
		}
	}
}

func FuzzParseAnsibleJSON(f *testing.F) {
	f.Add(`{"plays":[{"play":{"name":"p"},"tasks":[{"task":{"name":"t"},"hosts":{"h":{"failed":true,"msg":"boom","rc":2}}}]}],"stats":{"h":{"failures":1}}}`)
	f.Add(`[WARNING]: x {"plays":[]}`)
	f.Add(`{"plays":[{"tasks":[{"hosts":{"h":{"msg":["a",1]}}}]}]}`)
	f.Fuzz(func(t *testing.T, out string) {
		r, err := ParseAnsibleJSON(out)
		if err != nil {
			return
		}
		r.steps("h")
		r.output("h")
		if te := r.failure("h"); te != nil && te.Host != "h" {
			t.Fatalf("failure for the wrong host: %+v", te)
		}
	})
}
