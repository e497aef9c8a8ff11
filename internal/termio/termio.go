// Package termio connects a user's terminal to a remote byte stream — a
// VM's serial console socket, an SSH session — the way both command-line
// tools need it: raw mode while attached, a detach key, output until the
// remote side ends.
package termio

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/term"
)

// DetachKey (Ctrl-]) ends an Attach without touching the remote side.
const DetachKey = 0x1d

// Raw puts stdin in raw mode when it is a terminal and returns the function
// that restores it (a no-op otherwise) and whether it was a terminal.
func Raw(stdin io.Reader) (restore func(), isTerm bool) {
	f, ok := stdin.(*os.File)
	if !ok || !term.IsTerminal(int(f.Fd())) {
		return func() {}, false
	}
	old, err := term.MakeRaw(int(f.Fd()))
	if err != nil {
		return func() {}, true
	}
	return func() { term.Restore(int(f.Fd()), old) }, true
}

// Attach copies conn to stdout and stdin to conn until conn ends, the user
// types DetachKey, or ctx ends. On a terminal stdin is put in raw mode and
// a note about the detach key goes to stderr. A closed connection is not an
// error.
func Attach(ctx context.Context, conn io.ReadWriter, stdin io.Reader, stdout, stderr io.Writer) error {
	restore, isTerm := Raw(stdin)
	defer restore()
	if isTerm {
		fmt.Fprint(stderr, "[attached; Ctrl-] detaches]\r\n")
		defer fmt.Fprint(stderr, "\r\n[detached]\r\n") // the remote's last line may be a prompt
	}
	done := make(chan error, 2)
	go func() {
		_, err := io.Copy(stdout, conn)
		done <- err
	}()
	go func() {
		buf := make([]byte, 1024)
		for {
			n, err := stdin.Read(buf)
			for i := 0; i < n; i++ {
				if buf[i] == DetachKey {
					if i > 0 {
						conn.Write(buf[:i])
					}
					done <- nil
					return
				}
			}
			if n > 0 {
				if _, werr := conn.Write(buf[:n]); werr != nil {
					done <- werr
					return
				}
			}
			if err != nil {
				return // stdin closed: keep printing until the remote side ends
			}
		}
	}()
	select {
	case err := <-done:
		if errors.Is(err, net.ErrClosed) {
			return nil
		}
		return err
	case <-ctx.Done():
		return nil
	}
}
