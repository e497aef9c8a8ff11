package imagebuild

import (
	"bufio"
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/endpointkit/endpointkit/internal/text"
)

// PreseedLine is one setting of a Debian installer answer file (preseed):
// OWNER QUESTION TYPE VALUE, possibly continued over lines ending in a
// backslash.
type PreseedLine struct {
	Line                         int // where it starts, 1-based
	Owner, Question, Type, Value string
}

// ParsePreseed reads a preseed file. Blank lines and # comments are
// skipped; a line ending in "\" continues on the next. A setting with
// fewer than three fields is an error naming its line.
func ParsePreseed(path string, data []byte) ([]PreseedLine, error) {
	var out []PreseedLine
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	n, start := 0, 0
	var cur strings.Builder
	flush := func() error {
		setting := strings.TrimSpace(cur.String())
		cur.Reset()
		if setting == "" || strings.HasPrefix(setting, "#") {
			return nil
		}
		f := strings.Fields(setting)
		if len(f) < 3 {
			return fmt.Errorf("%s:%d: want OWNER QUESTION TYPE [VALUE], got %q", path, start, text.FirstLine(setting))
		}
		value := ""
		if len(f) > 3 {
			// the value is the rest of the line after TYPE, as debconf reads it
			rest := setting
			for _, w := range f[:3] {
				rest = strings.TrimLeft(rest[strings.Index(rest, w)+len(w):], " \t")
			}
			value = rest
		}
		out = append(out, PreseedLine{Line: start, Owner: f[0], Question: f[1], Type: f[2], Value: value})
		return nil
	}
	for sc.Scan() {
		n++
		line := sc.Text()
		if cur.Len() == 0 {
			start = n
		}
		if strings.HasSuffix(line, `\`) && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			cur.WriteString(strings.TrimSuffix(line, `\`))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		if err := flush(); err != nil {
			return nil, err
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := flush(); err != nil {
		return nil, err
	}
	return out, nil
}

// endpointkitPreseed returns the answer file served to the installer: the
// recipe's, then the settings endpointkit needs, which win (debconf keeps
// the last value): power off when done (the builder then boots the
// disk), and a late command that runs the recipe's provisioning script in
// the installed system after the answer file's own late command.
func endpointkitPreseed(user []byte, lines []PreseedLine, provisionURL string) []byte {
	late := "wget -q -O /target/root/endpointkit-provision.sh " + provisionURL +
		" && in-target sh /root/endpointkit-provision.sh > /dev/console 2>&1" +
		" && rm -f /target/root/endpointkit-provision.sh"
	for _, l := range lines {
		if l.Question == "preseed/late_command" && strings.TrimSpace(l.Value) != "" {
			late = l.Value + "; " + late
		}
	}
	var b bytes.Buffer
	b.Write(user)
	if len(user) > 0 && user[len(user)-1] != '\n' {
		b.WriteByte('\n')
	}
	b.WriteString("# Added by endpointkit imagebuild.\n")
	b.WriteString("d-i finish-install/reboot_in_progress note\n")
	b.WriteString("d-i debian-installer/exit/poweroff boolean true\n")
	fmt.Fprintf(&b, "d-i preseed/late_command string %s\n", late)
	return b.Bytes()
}

// screenBarRE matches the status bar GNU screen draws on the installer's
// serial console ("[ (1*installer) 2 shell … ][ Dec 03 13:38 ]").
var screenBarRE = regexp.MustCompile(`\[[^\]\n]*\(\d\*[^\]\n]*\]\[[^\]\n]*\]`)

// debianQuestion finds the question the Debian installer's text frontend
// (DEBIAN_FRONTEND=text) is waiting at on a console — a title, a line of
// dashes, the question's text, its choices and a last line starting
// "Prompt: ", or for a note or an error "[Press enter to continue]" — and
// returns "TITLE: FIRST LINE OF TEXT"; "" when the console does not end
// at a prompt.
func debianQuestion(console string) string {
	text := screenBarRE.ReplaceAllString(plainConsole(console), "")
	p := max(strings.LastIndex(text, "Prompt: "), strings.LastIndex(text, "[Press enter to continue]"))
	if p < 0 || strings.Contains(strings.TrimSpace(text[p:]), "\n") {
		return ""
	}
	lines := strings.Split(text[:p], "\n")
	for i := len(lines) - 1; i > 0; i-- {
		l := strings.TrimSpace(lines[i])
		if len(l) < 3 || strings.Trim(l, "-") != "" {
			continue
		}
		q := ""
		for j := i - 1; j >= 0 && q == ""; j-- {
			q = strings.TrimSpace(lines[j])
		}
		for _, body := range lines[i+1:] {
			if b := strings.TrimSpace(body); b != "" {
				q += ": " + b
				break
			}
		}
		return q
	}
	return "a question"
}
