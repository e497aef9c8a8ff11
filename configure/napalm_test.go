package configure

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/endpoint"
	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/vmimage"
	"golang.org/x/crypto/ssh"
)

// fakeJunos is a scripted NETCONF-over-SSH server that announces Junos'
// capabilities, records every RPC and answers <ok/> unless reply says
// otherwise. No real Junos is reachable here; this checks the RPC shape.
type fakeJunos struct {
	addr    string
	hostKey vmimage.HostKey
	reply   func(rpc string) string // "" = <ok/>

	mu   sync.Mutex
	rpcs []string
}

var messageID = regexp.MustCompile(`message-id="([^"]*)"`)

func startFakeJunos(t *testing.T, reply func(string) string) *fakeJunos {
	t.Helper()
	_, priv, _ := ed25519.GenerateKey(rand.Reader)
	signer, _ := ssh.NewSignerFromKey(priv)
	cfg := &ssh.ServerConfig{PasswordCallback: func(c ssh.ConnMetadata, pw []byte) (*ssh.Permissions, error) {
		if c.User() == "admin" && string(pw) == "junos-secret" {
			return nil, nil
		}
		return nil, errors.New("denied")
	}}
	cfg.AddHostKey(signer)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fakeJunos{addr: l.Addr().String(), reply: reply,
		hostKey: vmimage.HostKey{Type: signer.PublicKey().Type(), Fingerprint: ssh.FingerprintSHA256(signer.PublicKey())}}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go f.serve(c, cfg)
		}
	}()
	return f
}

func (f *fakeJunos) serve(c net.Conn, cfg *ssh.ServerConfig) {
	defer c.Close()
	_, chans, reqs, err := ssh.NewServerConn(c, cfg)
	if err != nil {
		return
	}
	go ssh.DiscardRequests(reqs)
	for nc := range chans {
		ch, chReqs, err := nc.Accept()
		if err != nil {
			return
		}
		go func() {
			for r := range chReqs {
				ok := r.Type == "subsystem" && bytes.Contains(r.Payload, []byte("netconf"))
				r.Reply(ok, nil)
				if ok {
					go f.session(ch)
				}
			}
		}()
	}
}

func (f *fakeJunos) session(ch ssh.Channel) {
	defer ch.Close()
	fmt.Fprintf(ch, `<hello xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><capabilities>`+
		`<capability>urn:ietf:params:netconf:base:1.0</capability>`+
		`<capability>urn:ietf:params:netconf:capability:candidate:1.0</capability>`+
		`<capability>urn:ietf:params:netconf:capability:validate:1.0</capability>`+
		`<capability>http://xml.juniper.net/netconf/junos/1.0</capability>`+
		`</capabilities><session-id>7</session-id></hello>]]>]]>`)
	var buf bytes.Buffer
	chunk := make([]byte, 8192)
	for {
		n, err := ch.Read(chunk)
		buf.Write(chunk[:n])
		for {
			i := bytes.Index(buf.Bytes(), []byte(eom))
			if i < 0 {
				break
			}
			msg := string(buf.Next(i + len(eom))[:i])
			if strings.Contains(msg, "<hello") {
				continue
			}
			f.mu.Lock()
			f.rpcs = append(f.rpcs, msg)
			f.mu.Unlock()
			body := "<ok/>"
			if f.reply != nil {
				if r := f.reply(msg); r != "" {
					body = r
				}
			}
			id := ""
			if m := messageID.FindStringSubmatch(msg); m != nil {
				id = m[1]
			}
			fmt.Fprintf(ch, `<rpc-reply xmlns="urn:ietf:params:xml:ns:netconf:base:1.0" message-id="%s">%s</rpc-reply>]]>]]>`, id, body)
		}
		if err != nil {
			return
		}
	}
}

// ops lists the recorded RPCs' operations, without the sync probe.
func (f *fakeJunos) ops() ([]string, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var ops, bodies []string
	for _, r := range f.rpcs {
		if strings.Contains(r, "endpointkit-sync") {
			continue
		}
		r = r[strings.Index(r, "<rpc"):]
		inner := r[strings.Index(r, ">")+1:]
		op := inner[1 : strings.IndexAny(inner[1:], " />")+1]
		ops = append(ops, op)
		bodies = append(bodies, r)
	}
	return ops, bodies
}

func (f *fakeJunos) target(l *lesson, file string, replace bool) Target {
	host, port, _ := net.SplitHostPort(f.addr)
	p, _ := strconv.Atoi(port)
	return Target{Name: "vqfx1", Address: host, NetconfPort: p, User: "admin", Password: "junos-secret",
		HostKeys: HostKeyPolicy{Pinned: []vmimage.HostKey{f.hostKey}}, LessonDir: l.dir, Replace: replace,
		Stages: []endpoint.StageConfig{{Method: endpoint.MethodNapalm, File: file, Driver: "junos"}}}
}

func TestNapalmJunosRPCShape(t *testing.T) {
	l := newLesson(t)
	for _, tc := range []struct {
		name, content string
		replace       bool
		want          []string // substrings of the load-configuration RPC
	}{
		{"xml-merge", "<configuration operation=\"replace\">\n  <system><host-name>vqfx1</host-name></system>\n</configuration>\n", false,
			[]string{`<load-configuration action="merge" format="xml"><configuration operation="replace">`, "<host-name>vqfx1</host-name>"}},
		{"text-override", "system {\n  host-name vqfx1;\n}\n", true,
			[]string{`<load-configuration action="override" format="text"><configuration-text>system {`, "host-name vqfx1;"}},
		{"text-replace-tags", "replace: interfaces {\n  xe-0/0/0 { unit 0; }\n}\n", false,
			[]string{`action="replace" format="text"`}},
		{"set", "# stage 1\nset system host-name vqfx1\ndelete interfaces xe-0/0/1\n", true,
			[]string{`<load-configuration action="set" format="text"><configuration-set># stage 1`, "set system host-name vqfx1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := startFakeJunos(t, nil)
			tg := f.target(l, l.config(0, "vqfx1-junos.txt", tc.content), tc.replace)
			rep, err := (&Napalm{}).Configure(ctxT(t, 20*time.Second), tg, tg.Stages[0])
			if err != nil {
				t.Fatalf("Configure: %v", err)
			}
			ops, bodies := f.ops()
			if got := strings.Join(ops, ","); got != "lock,load-configuration,validate,commit,unlock,close-session" {
				t.Fatalf("RPCs = %s", got)
			}
			if !strings.Contains(bodies[0], "<target><candidate/></target>") {
				t.Errorf("lock = %s", bodies[0])
			}
			for _, w := range tc.want {
				if !strings.Contains(bodies[1], w) {
					t.Errorf("load-configuration lacks %q:\n%s", w, bodies[1])
				}
			}
			if len(rep.Steps) != 5 {
				t.Errorf("steps = %s", stepNames(rep))
			}
		})
	}

	t.Run("load-error", func(t *testing.T) {
		f := startFakeJunos(t, func(rpc string) string {
			if strings.Contains(rpc, "load-configuration") {
				return `<rpc-error><error-type>protocol</error-type><error-tag>operation-failed</error-tag><error-severity>error</error-severity>` +
					`<error-path>[edit system]</error-path><error-message>syntax error, expecting ';'</error-message></rpc-error>`
			}
			return ""
		})
		tg := f.target(l, l.config(0, "vqfx1-junos.txt", "system { host-name vqfx1 }\n"), false)
		_, err := (&Napalm{}).Configure(ctxT(t, 20*time.Second), tg, tg.Stages[0])
		var re *RPCError
		if !errors.As(err, &re) || re.Operation != "load-configuration" || re.Tag != "operation-failed" || re.Path != "[edit system]" || !strings.Contains(re.Message, "syntax error") {
			t.Fatalf("err = %v; want the load-configuration rpc-error", err)
		}
		if ops, _ := f.ops(); strings.Join(ops, ",") != "lock,load-configuration,discard-changes,unlock,close-session" {
			t.Errorf("RPCs after a failed load = %v", ops)
		}
	})
}

func TestNapalmOtherDriverNeedsNapalm(t *testing.T) {
	ektest.RequireTool(t, "python3")
	if exec.Command("python3", "-c", "import napalm").Run() == nil {
		t.Skip("python napalm is installed here: the missing-napalm error cannot be shown")
	}
	l := newLesson(t)
	file := l.config(0, "eos1-eos.txt", "hostname eos1\n")
	tg := Target{Name: "eos1", Address: "127.0.0.1", HostKeys: HostKeyPolicy{InsecureIgnore: true}}
	_, err := (&Napalm{Python: "python3"}).Configure(ctxT(t, 20*time.Second), tg, endpoint.StageConfig{Method: endpoint.MethodNapalm, File: file, Driver: "eos"})
	if !errors.Is(err, ErrNeedsNapalm) || !strings.Contains(err.Error(), `driver "eos" needs napalm`) {
		t.Fatalf("err = %v; want ErrNeedsNapalm naming the driver (this test assumes napalm is not installed)", err)
	}
}

func TestDetectJunosFormat(t *testing.T) {
	for in, want := range map[string]JunosFormat{
		"<configuration/>":                  JunosXML,
		"\n  <?xml version='1.0'?><a/>":     JunosXML,
		"# c\n\nset system host-name x\n":   JunosSet,
		"/* c */\ndelete interfaces xe-0\n": JunosSet,
		"system {\n host-name x;\n}\n":      JunosText,
		"":                                  JunosText,
	} {
		if got := DetectJunosFormat(in); got != want {
			t.Errorf("DetectJunosFormat(%q) = %s; want %s", in, got, want)
		}
	}
}

func FuzzJunosLoadRPC(f *testing.F) {
	f.Add("set system host-name a\n", false)
	f.Add("<configuration><system/></configuration>", true)
	f.Add("system { host-name <b>&; }", false)
	f.Fuzz(func(t *testing.T, cfg string, replace bool) {
		rpc := JunosLoadRPC(cfg, replace)
		if !strings.HasPrefix(rpc, "<load-configuration action=\"") || !strings.HasSuffix(rpc, "</load-configuration>") {
			t.Fatalf("bad RPC %q", rpc)
		}
		if DetectJunosFormat(cfg) != JunosXML {
			// Text and set formats are escaped: the RPC must stay
			// well-formed whatever the file holds.
			if _, err := ParseNetconfConfig("rpc", []byte(rpc)); err != nil && strings.ToValidUTF8(cfg, "") == cfg {
				t.Fatalf("RPC for %q is not well-formed XML: %v", cfg, err)
			}
		}
	})
}
