// Package logtail prints a log file that may grow, be truncated or rotate
// (PATH becomes PATH.1 and a new PATH starts) while it is read: all of it or
// its last lines, then, when following, whatever is appended, the way
// `tail -F` does. It polls; a log that goes quiet costs one stat per poll.
package logtail

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"time"
)

// DefaultPoll is how often a followed log is checked for new output.
const DefaultPoll = 200 * time.Millisecond

// Options tune [Copy].
type Options struct {
	// Lines limits the first output to the last Lines lines (a last line
	// without a newline, such as a prompt, counts); 0 prints everything.
	Lines int
	// Rotated is where the older part of the log goes when it rotates
	// (usually PATH.1); it is printed before PATH. Empty: no rotation.
	Rotated string
	// Follow keeps copying what is appended until ctx ends or Done
	// reports true.
	Follow bool
	// Done, when following, reports that nothing will write the log any
	// more (its writer has exited): Copy then prints what is left and
	// returns. Nil: follow until ctx ends.
	Done func() bool
	// Poll is the interval between checks for new output (default
	// DefaultPoll).
	Poll time.Duration
}

// Copy writes the log at path to w as o says. The end of ctx ends a
// follow without error. A log that does not exist is an error wrapping
// fs.ErrNotExist.
func Copy(ctx context.Context, w io.Writer, path string, o Options) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	if err := head(w, f, o); err != nil {
		return err
	}
	if !o.Follow {
		return nil
	}
	poll := o.Poll
	if poll <= 0 {
		poll = DefaultPoll
	}
	tick := time.NewTicker(poll)
	defer tick.Stop()
	for {
		n, err := io.Copy(w, f)
		if err != nil {
			return err
		}
		switch next, rerr := reopened(f, path); {
		case rerr != nil:
			return rerr
		case next != nil: // rotated or replaced: what is left was read above
			f.Close()
			f = next
			continue
		}
		if n == 0 && o.Done != nil && o.Done() {
			_, err := io.Copy(w, f) // written just before the writer exited
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// head writes the whole log (rotated part first), or its last o.Lines
// lines, and leaves f at the end of what it wrote.
func head(w io.Writer, f *os.File, o Options) error {
	end, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		return err
	}
	var older []byte
	if o.Rotated != "" {
		older, err = os.ReadFile(o.Rotated)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	if o.Lines <= 0 {
		if _, err := w.Write(older); err != nil {
			return err
		}
		_, err := io.Copy(w, io.NewSectionReader(f, 0, end))
		return err
	}
	tail, err := tailOf(f, end, o.Lines)
	if err != nil {
		return err
	}
	if k := countLines(tail); k < o.Lines {
		tail = append(LastLines(older, o.Lines-k), tail...)
	}
	_, err = w.Write(tail)
	return err
}

// tailOf reads backwards from end in blocks until it holds more than n
// lines (or the whole file) and returns the last n.
func tailOf(f *os.File, end int64, n int) ([]byte, error) {
	const block = 32 << 10
	var buf []byte
	for off := end; off > 0 && bytes.Count(buf, []byte{'\n'}) <= n; {
		step := min(off, block)
		off -= step
		chunk := make([]byte, step)
		if _, err := f.ReadAt(chunk, off); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		buf = append(chunk, buf...)
	}
	return LastLines(buf, n), nil
}

// LastLines returns the last n lines of b; a last line without a newline
// counts as one.
func LastLines(b []byte, n int) []byte {
	if n <= 0 {
		return nil
	}
	i := len(b)
	if i > 0 && b[i-1] == '\n' {
		i-- // the final newline ends the last line
	}
	for ; n > 0; n-- {
		j := bytes.LastIndexByte(b[:i], '\n')
		if j < 0 {
			return b
		}
		i = j
	}
	return b[i+1:]
}

func countLines(b []byte) int {
	n := bytes.Count(b, []byte{'\n'})
	if len(b) > 0 && b[len(b)-1] != '\n' {
		n++
	}
	return n
}

// reopened returns the file now at path when it is not f (the log was
// rotated or replaced), f itself rewound when it was truncated, or nil
// when nothing changed or path is (momentarily) missing.
func reopened(f *os.File, path string) (*os.File, error) {
	cur, err := os.Stat(path)
	if err != nil {
		return nil, nil
	}
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !os.SameFile(cur, st) {
		next, err := os.Open(path)
		if err != nil {
			return nil, nil
		}
		return next, nil
	}
	pos, err := f.Seek(0, io.SeekCurrent)
	if err != nil {
		return nil, err
	}
	if st.Size() < pos {
		_, err = f.Seek(0, io.SeekStart)
	}
	return nil, err
}
