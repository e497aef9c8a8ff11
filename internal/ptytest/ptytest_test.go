package ptytest

import (
	"os/exec"
	"slices"
	"testing"
	"time"
)

func TestRender(t *testing.T) {
	out := "title\r\n a booting\r\n b booting\r\n" +
		"\x1b[2A\r\x1b[2K a \x1b[32mready\x1b[0m\r\n\x1b[2K b ✘ failed\r\n" +
		"done\r\nprompt: x\rP"
	want := []string{"title", " a ready", " b ✘ failed", "done", "Prompt: x"}
	if got := Render(out); !slices.Equal(got, want) {
		t.Errorf("Render = %q\nwant %q", got, want)
	}
}

// A command on the terminal sees a terminal, and what is typed reaches it.
func TestStartExpectSend(t *testing.T) {
	term := Start(t, exec.Command("sh", "-c", `[ -t 0 ] && [ -t 2 ] && printf 'name? '; read n; echo "hello $n"`))
	term.Expect(t, `name\? $`, 10*time.Second)
	term.Send(t, "pty\r")
	term.Expect(t, `hello pty`, 10*time.Second)
	if code := term.Wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit %d", code)
	}
}
