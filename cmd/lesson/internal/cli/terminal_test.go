package cli

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit/internal/ektest"
	"github.com/endpointkit/endpointkit/internal/imagetest"
	"github.com/endpointkit/endpointkit/internal/ptytest"
	"github.com/endpointkit/endpointkit/vmimage"
)

// session is a lesson instance under a private state root, driven by the
// built lesson binary.
type session struct {
	bin, root, name string
	common          []string // --state-root ROOT --instance NAME
}

func newSession(t *testing.T, images map[string]*vmimage.Image) (*session, string) {
	t.Helper()
	ektest.RequireRoot(t)
	ektest.RequireQEMU(t)
	s := &session{bin: filepath.Join(binDir(t), "lesson"), name: ektest.Name("ekt")}
	dir := t.TempDir()
	imageDir := filepath.Join(dir, "images")
	os.MkdirAll(imageDir, 0o755)
	for slug, im := range images {
		if err := os.Symlink(im.Dir, filepath.Join(imageDir, slug)); err != nil {
			t.Fatal(err)
		}
	}
	root, err := os.MkdirTemp("/run", "ekt")
	if err != nil {
		t.Fatal(err)
	}
	s.root = root
	s.common = []string{"--state-root", root, "--instance", s.name}
	t.Cleanup(func() {
		exec.Command(s.bin, append([]string{"down", "--log-format", "text"}, s.common...)...).Run()
		ektest.AssertClean(t, "ek-"+s.name, "qemu-system", root+"/"+s.name+"/")
		os.RemoveAll(root)
	})
	return s, imageDir
}

// args is the command line `lesson VERB --state-root … --instance … ARGS…`.
func (s *session) args(verb string, args ...string) []string {
	return append(append([]string{verb}, s.common...), args...)
}

// term starts `lesson VERB …` on a new terminal.
func (s *session) term(t *testing.T, verb string, args ...string) *ptytest.Term {
	t.Helper()
	cmd := exec.Command(s.bin, s.args(verb, args...)...)
	cmd.Env = append(os.Environ(), "TERM=xterm-256color")
	return ptytest.Start(t, cmd)
}

// screenLines returns the screen's lines matching re.
func screenLines(screen []string, re string) []string {
	rx := regexp.MustCompile(re)
	var out []string
	for _, l := range screen {
		if rx.MatchString(l) {
			out = append(out, l)
		}
	}
	return out
}

// TestTerminalSession is the README's session at a real terminal, on the
// two-endpoint pair lesson: `lesson up` draws one line per endpoint,
// updated in place up to "configured"; bash completes the endpoints of the
// running instance; `lesson console` shows the console's last lines ending
// in the login prompt, logs in as antidote, runs a command and detaches
// with Ctrl-]; `lesson logs` prints (and follows, until the endpoint
// stops) the console and launcher logs; `lesson down` draws each endpoint
// stopping.
func TestTerminalSession(t *testing.T) {
	s, images := newSession(t, map[string]*vmimage.Image{"tiny": imagetest.Tiny(t)})
	lesson := filepath.Join(ektest.RepoRoot(t), "testdata", "lessons", "pair")

	up := s.term(t, "up", lesson, "--images", images, "--accel", "tcg")
	if code := up.Wait(t, 10*time.Minute); code != 0 {
		t.Fatalf("up: exit %d:\n%s", code, up.Output())
	}
	screen := up.Screen()
	t.Logf("lesson up at a terminal:\n%s", strings.Join(screen, "\n"))
	for _, ep := range []string{"a", "b"} {
		if l := screenLines(screen, `^ . `+ep+` `); len(l) != 1 || !regexp.MustCompile(`✔ `+ep+`\s+tiny\s+configured \(boot \d+\.\ds, config \d+\.\ds\)$`).MatchString(l[0]) {
			t.Errorf("up: the screen's line for %s is %q; want one line ending configured with its times", ep, l)
		}
	}
	if l := screenLines(screen, `^lesson up pair  2/2 configured`); len(l) != 1 {
		t.Errorf("up: no title line with 2/2 configured")
	}
	if n := strings.Count(up.Output(), "\x1b[2K ⠋ a"); n == 0 {
		t.Errorf("up: never drew a in progress (spinner)")
	}
	if strings.Contains(up.Output(), "level=INFO") {
		t.Errorf("up: structured log records on a terminal:\n%s", up.Output())
	}
	if l := screenLines(screen, `antidote@`); len(l) != 2 {
		t.Errorf("up: the instance table lacks the ssh lines:\n%s", strings.Join(screen, "\n"))
	}

	// Tab after `lesson ssh` offers the running instance's endpoints.
	if got := bashCompgen(t, filepath.Dir(s.bin), s.root, ""); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("bash completion of endpoints: %q, want [a b]", got)
	}

	// A console to log in on.
	con := s.term(t, "console", "a")
	con.Expect(t, `\[attached; Ctrl-\] detaches\]`, 30*time.Second)
	con.Expect(t, `a login: $`, 30*time.Second) // the last lines, ending in the prompt
	con.Send(t, "antidote\r")
	con.Expect(t, `Password: $`, 30*time.Second)
	con.Send(t, "antidotepassword\r")
	con.Expect(t, `antidote@a:~\$ `, time.Minute)
	con.Send(t, "echo console-$((6*7)) $(hostname) $(id -un) $(tty)\r")
	con.Expect(t, `console-42 a antidote /dev/ttyS0`, time.Minute)
	con.Send(t, "\x1d")
	if code := con.Wait(t, 30*time.Second); code != 0 {
		t.Errorf("console: exit %d after Ctrl-]:\n%s", code, con.Output())
	}
	// Attaching again shows the last lines: the session just left.
	again := s.term(t, "console", "a")
	again.Expect(t, `console-42 a antidote /dev/ttyS0`, 30*time.Second)
	again.Send(t, "\x1d")
	again.Wait(t, 30*time.Second)

	// Logs: console (with what the session did), launcher, last lines.
	full, errOut, code := run(t, s.args("logs", "a")...)
	if code != 0 || !strings.Contains(full, "endpointkit: ready hostname=a") || !strings.Contains(full, "console-42 a antidote") {
		t.Errorf("logs a: code %d, %s\n%s", code, errOut, full)
	}
	out, _, code := run(t, s.args("logs", "--launcher", "b")...)
	if code != 0 || !strings.Contains(out, "endpoint b: ready in") {
		t.Errorf("logs --launcher b: code %d\n%s", code, out)
	}
	out, _, code = run(t, s.args("logs", "--lines", "2", "a")...)
	if code != 0 || out == "" || strings.Count(strings.TrimSuffix(out, "\n"), "\n") != 1 || !strings.HasSuffix(full, out) {
		t.Errorf("logs --lines 2 a: code %d, %q; want the log's last 2 lines", code, out)
	}
	if _, errOut, code = run(t, s.args("logs", "zz")...); code != 2 || !strings.Contains(errOut, `no endpoint "zz"`) {
		t.Errorf("logs zz: code %d, %q", code, errOut)
	}
	// Follow: what the guest prints appears; the follow ends once the
	// endpoint is gone.
	follow := exec.Command(s.bin, s.args("logs", "--follow", "b")...)
	stdout, _ := follow.StdoutPipe()
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1000)
	var followed sync.WaitGroup
	followed.Go(func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	})
	if out, _, code := run(t, s.args("ssh", "b", "--", "echo followed-$((6*7)) | sudo tee /dev/console >/dev/null")...); code != 0 {
		t.Fatalf("ssh b: code %d, %s", code, out)
	}
	waitLine(t, lines, "followed-42")

	down := s.term(t, "down")
	if code := down.Wait(t, 5*time.Minute); code != 0 {
		t.Fatalf("down: exit %d:\n%s", code, down.Output())
	}
	screen = down.Screen()
	t.Logf("lesson down at a terminal:\n%s", strings.Join(screen, "\n"))
	for _, ep := range []string{"a", "b"} {
		if l := screenLines(screen, `^ . `+ep+` `); len(l) != 1 || !regexp.MustCompile(`✔ `+ep+`\s+tiny\s+stopped \(stop \d+\.\ds\)$`).MatchString(l[0]) {
			t.Errorf("down: the screen's line for %s is %q", ep, l)
		}
	}
	done := make(chan error, 1)
	go func() { done <- follow.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("logs --follow: %v", err)
		}
	case <-time.After(30 * time.Second):
		follow.Process.Kill()
		t.Errorf("logs --follow still running after the endpoint stopped")
	}
	followed.Wait()
}

// waitLine waits for a line containing want.
func waitLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	deadline := time.After(time.Minute)
	var seen []string
	for {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatalf("output ended before %q:\n%s", want, strings.Join(seen, "\n"))
			}
			if strings.Contains(l, want) {
				return
			}
			seen = append(seen, l)
		case <-deadline:
			t.Fatalf("%q did not appear:\n%s", want, strings.Join(seen, "\n"))
		}
	}
}

// TestConsoleLoginDebian logs in on the serial console of a debootstrap
// image (systemd's serial-getty, the image's antidote password) through
// `lesson console` at a terminal; the instance is started with JSON
// progress records.
func TestConsoleLoginDebian(t *testing.T) {
	s, images := newSession(t, map[string]*vmimage.Image{"debian": imagetest.Debian(t)})
	lesson := filepath.Join(t.TempDir(), "debian-console")
	os.MkdirAll(filepath.Join(lesson, "stage0"), 0o755)
	os.WriteFile(filepath.Join(lesson, "stage0", "guide.md"), []byte("# Log in on the console\n"), 0o644)
	meta := `name: Debian console
slug: debian-console
category: fundamentals
tier: local
description: One Debian endpoint, reached on its serial console.
shortDescription: Debian console
endpoints:
  - name: d
    image: debian
    presentations: [{name: cli, port: 22, type: ssh}]
stages:
  - {description: Log in, guideType: markdown}
`
	if err := os.WriteFile(filepath.Join(lesson, "lesson.meta.yaml"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
	launcher := filepath.Join(filepath.Dir(s.bin), "endpoint") // in-process: not beside this test binary
	out, errOut, code := run(t, s.args("up", lesson, "--images", images, "--launcher", launcher, "--accel", "tcg", "--stage", "-1", "--log-format", "json")...)
	if code != 0 {
		t.Fatalf("up: code %d\n%s\n%s", code, out, errOut)
	}
	if !strings.Contains(errOut, `"step":"ready","elapsed":`) || !strings.Contains(errOut, `"endpoint":"d"`) {
		t.Errorf("up --log-format json: no JSON records on stderr:\n%s", errOut)
	}

	con := s.term(t, "console", "d")
	con.Expect(t, `\[attached; Ctrl-\] detaches\]`, 30*time.Second)
	// serial-getty may start after the ready marker: Enter asks again.
	deadline := time.Now().Add(3 * time.Minute)
	for !strings.Contains(con.Output(), "login: ") {
		if time.Now().After(deadline) {
			t.Fatalf("no login prompt on d's console:\n%s", con.Output())
		}
		con.Send(t, "\r")
		time.Sleep(2 * time.Second)
	}
	con.Expect(t, `login: `, time.Second)
	con.Send(t, "antidote\r")
	con.Expect(t, `Password: `, time.Minute)
	con.Send(t, "antidotepassword\r")
	con.Expect(t, `antidote@d:~\$ `, 2*time.Minute) // login flushes what is typed ahead
	con.Send(t, "echo debian-$((6*7)) $(id -un) $(tty)\r")
	con.Expect(t, `debian-42 antidote /dev/ttyS0`, 2*time.Minute)
	con.Send(t, "\x1d")
	if code := con.Wait(t, 30*time.Second); code != 0 {
		t.Errorf("console: exit %d", code)
	}
}
