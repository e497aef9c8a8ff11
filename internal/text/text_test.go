package text

import (
	"os/exec"
	"testing"
)

func TestFirstLine(t *testing.T) {
	for in, want := range map[string]string{"": "", "one": "one", "\n  two \nthree": "two", "a\r\nb": "a"} {
		if got := FirstLine(in); got != want {
			t.Errorf("FirstLine(%q) = %q; want %q", in, got, want)
		}
	}
}

// A real shell reads every quoted word back as it was.
func TestShellQuote(t *testing.T) {
	words := []string{"", "plain", "it's", `a"b`, "$(reboot)", "x\ny", `\`, "''"}
	out, err := exec.Command("sh", "-c", `for w in `+ShellQuoteAll(words)+`; do printf '%s\0' "$w"; done`).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	start := 0
	for i, c := range out {
		if c == 0 {
			got = append(got, string(out[start:i]))
			start = i + 1
		}
	}
	if len(got) != len(words) {
		t.Fatalf("shell read %q; want %q", got, words)
	}
	for i := range words {
		if got[i] != words[i] {
			t.Errorf("word %d: shell read %q; want %q", i, got[i], words[i])
		}
	}
}
