package imagebuild

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// progress reports build steps: on a terminal as lines and a spinner for
// long commands, otherwise as structured log records only.
type progress struct {
	mu    sync.Mutex
	tty   io.Writer // nil unless a terminal
	log   *slog.Logger
	start time.Time
}

func newProgress(w io.Writer, log *slog.Logger) *progress {
	p := &progress{log: log, start: time.Now()}
	if f, ok := w.(*os.File); ok && (isatty.IsTerminal(f.Fd()) || isatty.IsCygwinTerminal(f.Fd())) {
		p.tty = w
	}
	return p
}

// Step announces a step.
func (p *progress) Step(msg string) {
	p.log.Info("imagebuild step", "step", msg)
	if p.tty != nil {
		p.mu.Lock()
		fmt.Fprintf(p.tty, "\r\033[K[%5.1fs] %s\n", time.Since(p.start).Seconds(), msg)
		p.mu.Unlock()
	}
}

// Done announces the end of the build.
func (p *progress) Done(msg string) { p.Step(msg) }

// Lines returns a writer for a long command's output: on a terminal each
// line advances a spinner showing the line; otherwise lines are logged at
// debug level.
func (p *progress) Lines(desc string) io.WriteCloser {
	lw := &lineWriter{log: p.log, desc: desc}
	if p.tty != nil {
		lw.bar = progressbar.NewOptions(-1, progressbar.OptionSetWriter(p.tty), progressbar.OptionSetDescription(desc),
			progressbar.OptionSpinnerType(14), progressbar.OptionClearOnFinish(), progressbar.OptionSetElapsedTime(true))
	}
	return lw
}

type lineWriter struct {
	log  *slog.Logger
	desc string
	bar  *progressbar.ProgressBar
	buf  []byte
	last []string // tail kept for error messages
}

func (w *lineWriter) Write(b []byte) (int, error) {
	w.buf = append(w.buf, b...)
	for {
		i := strings.IndexByte(string(w.buf), '\n')
		if i < 0 {
			break
		}
		line := strings.TrimSpace(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
		if line == "" {
			continue
		}
		w.last = append(w.last, line)
		if len(w.last) > 8 {
			w.last = w.last[1:]
		}
		w.log.Debug(w.desc, "out", line)
		if w.bar != nil {
			if len(line) > 60 {
				line = line[:60]
			}
			w.bar.Describe(w.desc + ": " + line)
			w.bar.Add(1)
		}
	}
	return len(b), nil
}

func (w *lineWriter) Close() error {
	if w.bar != nil {
		w.bar.Finish()
	}
	return nil
}

// Tail returns the last lines written, for error messages.
func (w *lineWriter) Tail() string { return strings.Join(w.last, " | ") }
