package imagebuild

import (
	"os"
	"strings"
	"testing"
)

func TestParsePreseed(t *testing.T) {
	src := "# comment\nd-i passwd/username string antidote\n\nd-i preseed/late_command string \\\n  echo one; \\\n  echo two\nd-i pkgsel/include string  openssh-server   sudo\ntasksel tasksel/first multiselect\n"
	lines, err := ParsePreseed("p.cfg", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(lines) != 4 {
		t.Fatalf("lines = %+v", lines)
	}
	if l := lines[1]; l.Line != 4 || l.Question != "preseed/late_command" || l.Value != "echo one;    echo two" {
		t.Errorf("continued line = %+v", l)
	}
	if l := lines[2]; l.Value != "openssh-server   sudo" || l.Type != "string" {
		t.Errorf("value = %q", l.Value)
	}
	if l := lines[3]; l.Value != "" || l.Type != "multiselect" {
		t.Errorf("empty value = %+v", l)
	}
	if _, err := ParsePreseed("p.cfg", []byte("d-i x string y\nd-i broken\n")); err == nil || !strings.HasPrefix(err.Error(), "p.cfg:2: want OWNER QUESTION TYPE") {
		t.Errorf("bad line: %v", err)
	}
}

// TestEndpointkitPreseed: the served answers keep the recipe's, then power
// off at the end and chain the recipe's late command before the
// provisioning script.
func TestEndpointkitPreseed(t *testing.T) {
	user := []byte("d-i passwd/username string antidote\nd-i preseed/late_command string touch /target/mine")
	lines, _ := ParsePreseed("p.cfg", user)
	out := string(endpointkitPreseed(user, lines, "http://10.0.2.2:1234/p.sh"))
	if !strings.HasPrefix(out, string(user)+"\n# Added by endpointkit") || !strings.Contains(out, "d-i debian-installer/exit/poweroff boolean true\n") {
		t.Errorf("served preseed:\n%s", out)
	}
	if !strings.Contains(out, "d-i preseed/late_command string touch /target/mine; wget -q -O /target/root/endpointkit-provision.sh http://10.0.2.2:1234/p.sh && in-target sh ") {
		t.Errorf("late command not chained:\n%s", out)
	}
	served, err := ParsePreseed("served", []byte(out))
	if err != nil {
		t.Fatal(err)
	}
	last := map[string]string{}
	for _, l := range served {
		last[l.Question] = l.Value
	}
	if !strings.HasPrefix(last["preseed/late_command"], "touch /target/mine; wget") {
		t.Errorf("the late command debconf keeps = %q", last["preseed/late_command"])
	}
}

// TestDebianQuestion reads the question from a real Debian installer
// console (DEBIAN_FRONTEND=text on ttyS0, inside GNU screen) stopped at a
// failed download, and nothing from a console still making progress.
func TestDebianQuestion(t *testing.T) {
	raw, err := os.ReadFile("testdata/di-stuck-console.txt")
	if err != nil {
		t.Fatal(err)
	}
	want := "Download installer components: The installer failed to download a file from the mirror. This may be a problem"
	if got := debianQuestion(string(raw)); got != want {
		t.Errorf("question = %q; want %q", got, want)
	}
	if got := debianQuestion(string(raw) + "\r\nRetrying...  ... 10%"); got != "" {
		t.Errorf("question after progress = %q; want none", got)
	}
	errScreen := "Choose a mirror of the Debian archive\r\n-------------------------------------\r\n\r\n!! ERROR: Bad archive mirror\r\n\r\nAn error has been detected.\r\n[Press enter to continue] "
	if got := debianQuestion(errScreen); got != "Choose a mirror of the Debian archive: !! ERROR: Bad archive mirror" {
		t.Errorf("error screen question = %q", got)
	}
	if got := debianQuestion("Loading additional components ... 50%"); got != "" {
		t.Errorf("question = %q; want none", got)
	}
}

// FuzzParsePreseed: any input parses or fails with a located error, and
// never panics.
func FuzzParsePreseed(f *testing.F) {
	f.Add([]byte("d-i a/b string c\n"))
	f.Add([]byte("d-i a \\\nb string \\\n"))
	f.Add([]byte("x\n#y\\\n  \\"))
	f.Fuzz(func(t *testing.T, raw []byte) {
		lines, err := ParsePreseed("f.cfg", raw)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "f.cfg") {
				t.Fatalf("error %q does not name the file", err)
			}
			return
		}
		for _, l := range lines {
			if l.Line < 1 || l.Owner == "" || l.Question == "" || l.Type == "" {
				t.Fatalf("line %+v", l)
			}
		}
		debianQuestion(string(raw))
	})
}
