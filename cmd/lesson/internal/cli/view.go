package cli

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/text"
	"github.com/endpointkit/endpointkit/lessonmeta"
	"github.com/mattn/go-runewidth"
	"golang.org/x/term"
)

// Values of --log-format.
const (
	logAuto = "auto" // a live view on a terminal, else text
	logText = "text" // slog text records
	logJSON = "json" // slog JSON records
)

// addLogFormat declares --log-format on a command that reports progress
// (up, configure, down, …).
func (f *instanceFlags) addLogFormat(fs *flag.FlagSet) {
	fs.StringVar(&f.logFormat, "log-format", logAuto, "progress on stderr: auto (a live view on a terminal, else text), text or json (structured log records)")
}

// structuredProgress writes each progress event as one slog record on w,
// in the --log-format's encoding.
func (f *instanceFlags) structuredProgress(w io.Writer) func(endpointkit.Event) {
	var h slog.Handler = slog.NewTextHandler(w, nil)
	if f.logFormat == logJSON {
		h = slog.NewJSONHandler(w, nil)
	}
	log := slog.New(h)
	return func(e endpointkit.Event) {
		attrs := []any{"step", string(e.Step), "elapsed", e.Elapsed.Round(time.Millisecond)}
		if e.Endpoint != "" {
			attrs = append(attrs, "endpoint", e.Endpoint)
		}
		if e.Image != "" {
			attrs = append(attrs, "image", e.Image)
		}
		if e.Err != nil {
			log.Error(e.Message, append(attrs, "err", e.Err.Error())...)
			return
		}
		log.Info(e.Message, attrs...)
	}
}

// checkLogFormat rejects an unknown --log-format.
func (f *instanceFlags) checkLogFormat() error {
	switch f.logFormat {
	case "", logAuto, logText, logJSON:
		return nil
	}
	return fmt.Errorf("%w: --log-format %q: use auto, text or json", ErrUsage, f.logFormat)
}

// live reports whether progress is drawn as a live view: --log-format auto
// on a terminal that can move its cursor, without --verbose (whose
// records would tear the view).
func (f *instanceFlags) live(env *Env) bool {
	return (f.logFormat == "" || f.logFormat == logAuto) && !f.verbose && isTerminal(env.Stderr) && os.Getenv("TERM") != "dumb"
}

// viewRow is an endpoint shown before any event names it.
type viewRow struct {
	Name, Image string
	Phase       string // what it is doing or did last: "image", "ready", "configured (stage 0)", …
	Active      bool   // it is in progress (a spinner, a running time)
}

// startView makes opts.Progress draw a live view on stderr when f.live,
// one line per endpoint (rows first, others as events name them), and
// returns it; stop it before printing anything else. Otherwise progress
// stays structured records and startView returns nil (whose stop does
// nothing). goal is the phase that ends an endpoint's line well
// ("configured", "ready", "stopped").
func (f *instanceFlags) startView(env *Env, opts *endpointkit.Options, title, goal string, rows []viewRow) *view {
	if !f.live(env) {
		return nil
	}
	v := newView(env.Stderr, title, goal, os.Getenv("NO_COLOR") == "")
	v.width = func() int {
		if fd, ok := env.Stderr.(interface{ Fd() uintptr }); ok {
			if w, _, err := term.GetSize(int(fd.Fd())); err == nil && w > 0 {
				return w
			}
		}
		return 80
	}
	for _, r := range rows {
		v.add(r)
	}
	opts.Progress = v.event
	v.run(100 * time.Millisecond)
	return v
}

// view is the live progress of an operation on a terminal: a title line,
// one line per endpoint updated in place (what it is doing, for how long,
// the times of the steps it finished, a failure in red), and the latest
// instance-wide message. It is drawn from the library's progress events
// alone, so it shows any operation that reports them (up, configure,
// down, restart).
type view struct {
	w     io.Writer
	title string
	goal  string
	color bool
	width func() int
	now   func() time.Time
	start time.Time

	mu    sync.Mutex
	rows  []*row
	note  string
	drawn int // lines on screen from the last draw
	frame int // spinner frame
	stopc chan struct{}
	done  chan struct{}
}

// row is one endpoint's line.
type row struct {
	name, image string
	phase       string
	active      bool
	since       time.Time
	detail      string   // about the phase: "stage 0 (ssh)", "was not running"
	finished    []string // steps done, with their times: "boot 2.9s"
	failure     string   // "failed booting: …", kept through a teardown
}

func newView(w io.Writer, title, goal string, color bool) *view {
	return &view{w: w, title: title, goal: goal, color: color, width: func() int { return 80 }, now: time.Now,
		start: time.Now(), stopc: make(chan struct{}), done: make(chan struct{})}
}

func (v *view) add(r viewRow) *row {
	x := &row{name: r.Name, image: r.Image, phase: r.Phase, active: r.Active, since: v.now()}
	v.rows = append(v.rows, x)
	return x
}

func (v *view) row(name string) *row {
	for _, r := range v.rows {
		if r.name == name {
			return r
		}
	}
	return v.add(viewRow{Name: name})
}

// event applies one progress event and redraws.
func (v *view) event(e endpointkit.Event) {
	v.mu.Lock()
	defer v.mu.Unlock()
	v.apply(e, v.now())
	v.draw(false)
}

// apply changes the rows as event e, received at now, says.
func (v *view) apply(e endpointkit.Event, now time.Time) {
	if e.Endpoint == "" {
		if e.Step == endpointkit.StepImage && e.Image != "" {
			for _, r := range v.rows {
				if r.image == e.Image && r.phase == "image" {
					r.finish(now, "image", "waiting", false)
				}
			}
		}
		v.note = e.Message
		if e.Err != nil {
			v.note += ": " + text.FirstLine(e.Err.Error())
		}
		return
	}
	r := v.row(e.Endpoint)
	detail := strings.TrimPrefix(e.Message, e.Endpoint+": ")
	if detail == e.Message {
		detail = strings.TrimPrefix(e.Message, e.Endpoint+" ")
	}
	switch e.Step {
	case endpointkit.StepBoot: // also a restart: a new life
		r.finished, r.failure = nil, ""
		r.begin(now, "booting")
	case endpointkit.StepReady:
		r.finish(now, "boot", "ready", r.phase == "booting")
	case endpointkit.StepConfigure:
		r.begin(now, "configuring")
		r.detail = detail
	case endpointkit.StepConfigured:
		r.finish(now, "config", "configured", true)
	case endpointkit.StepFailed:
		r.failure = "failed " + r.phase
		if e.Err != nil {
			r.failure += ": " + text.FirstLine(e.Err.Error())
		}
		r.phase, r.active, r.detail = "", false, ""
	case endpointkit.StepTeardown:
		r.begin(now, "stopping")
	case endpointkit.StepStopped:
		wasStopping := r.phase == "stopping"
		r.finish(now, "stop", "stopped", wasStopping)
		if !wasStopping {
			r.detail = "(" + detail + ")"
		}
	default:
		r.begin(now, string(e.Step))
		r.detail = detail
	}
}

// begin starts a phase in progress.
func (r *row) begin(now time.Time, phase string) {
	r.phase, r.active, r.since, r.detail = phase, true, now, ""
}

// finish ends the running step (recording its time as name when timed)
// and moves to a resting phase.
func (r *row) finish(now time.Time, name, phase string, timed bool) {
	if timed && r.active {
		r.finished = append(r.finished, fmt.Sprintf("%s %s", name, secs(now.Sub(r.since))))
	}
	r.phase, r.active, r.since, r.detail = phase, false, now, ""
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1fs", d.Seconds()) }

// run redraws every tick (spinners, running times) until stop.
func (v *view) run(tick time.Duration) {
	go func() {
		defer close(v.done)
		t := time.NewTicker(tick)
		defer t.Stop()
		for {
			select {
			case <-v.stopc:
				return
			case <-t.C:
				v.mu.Lock()
				v.frame++
				v.draw(false)
				v.mu.Unlock()
			}
		}
	}()
}

// stop draws the final state and leaves it on the screen. A nil view does
// nothing.
func (v *view) stop() {
	if v == nil {
		return
	}
	close(v.stopc)
	<-v.done
	v.mu.Lock()
	defer v.mu.Unlock()
	v.draw(true)
}

var spinner = []rune("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")

// ANSI sequences.
const (
	ansiRed   = "\x1b[31m"
	ansiGreen = "\x1b[32m"
	ansiDim   = "\x1b[2m"
	ansiReset = "\x1b[0m"
	ansiUp    = "\x1b[%dA"
	ansiClear = "\r\x1b[2K"
)

// seg is a piece of a line in one colour ("" for none).
type seg struct{ text, color string }

// lines lays the view out; final drops spinners.
func (v *view) lines(now time.Time, final bool) [][]seg {
	nameW, imageW, ok := 0, 0, 0
	for _, r := range v.rows {
		nameW, imageW = max(nameW, runewidth.StringWidth(r.name)), max(imageW, runewidth.StringWidth(r.image))
		if r.phase == v.goal && r.failure == "" {
			ok++
		}
	}
	head := fmt.Sprintf("%s  %s", v.title, secs(now.Sub(v.start)))
	if len(v.rows) > 0 {
		head = fmt.Sprintf("%s  %d/%d %s  %s", v.title, ok, len(v.rows), v.goal, secs(now.Sub(v.start)))
	}
	out := [][]seg{{{head, ""}}}
	for _, r := range v.rows {
		var mark seg
		switch {
		case r.failure != "":
			mark = seg{"✘", ansiRed}
		case r.active && !final:
			mark = seg{string(spinner[v.frame%len(spinner)]), ""}
		case r.active:
			mark = seg{"…", ""}
		case r.phase == v.goal:
			mark = seg{"✔", ansiGreen}
		default:
			mark = seg{"·", ansiDim}
		}
		line := []seg{{" ", ""}, mark, {" " + pad(r.name, nameW) + "  " + pad(r.image, imageW) + "  ", ""}}
		words := []string{}
		if r.phase != "" {
			words = append(words, r.phase)
		}
		if r.detail != "" {
			words = append(words, r.detail)
		}
		if r.active {
			words = append(words, secs(now.Sub(r.since)))
		}
		if len(r.finished) > 0 {
			words = append(words, "("+strings.Join(r.finished, ", ")+")")
		}
		if r.failure != "" {
			line = append(line, seg{r.failure, ansiRed})
			if len(words) > 0 {
				line = append(line, seg{" · ", ""})
			}
		}
		out = append(out, append(line, seg{strings.Join(words, " "), ""}))
	}
	if v.note != "" {
		out = append(out, []seg{{"  " + v.note, ansiDim}})
	}
	return out
}

func pad(s string, w int) string { return s + strings.Repeat(" ", max(w-runewidth.StringWidth(s), 0)) }

// draw redraws the view in place; called with mu held.
func (v *view) draw(final bool) {
	lines := v.lines(v.now(), final)
	width := v.width() - 1 // the last column would wrap on some terminals
	var b strings.Builder
	if v.drawn > 0 {
		fmt.Fprintf(&b, ansiUp, v.drawn)
	}
	for _, l := range lines {
		b.WriteString(ansiClear)
		b.WriteString(v.render(l, width))
		b.WriteString("\n")
	}
	for i := len(lines); i < v.drawn; i++ { // fewer lines than before: blank the rest
		b.WriteString(ansiClear + "\n")
	}
	if extra := v.drawn - len(lines); extra > 0 {
		fmt.Fprintf(&b, ansiUp, extra)
	}
	v.drawn = len(lines)
	io.WriteString(v.w, b.String())
}

// render writes a line's segments, cut to width columns, in colour when
// the view has colour.
func (v *view) render(l []seg, width int) string {
	var b strings.Builder
	for _, s := range l {
		w := runewidth.StringWidth(s.text)
		text := s.text
		if w > width {
			text = runewidth.Truncate(s.text, width, "…")
			w = width
		}
		width -= w
		if v.color && s.color != "" {
			text = s.color + text + ansiReset
		}
		b.WriteString(text)
		if width <= 0 {
			break
		}
	}
	return b.String()
}

// noteHandler is a slog.Handler showing each record (info and up) as the
// view's note: what a long step — an image build — is doing.
type noteHandler struct{ v *view }

// buildLogger returns a logger whose records become the view's note.
func (v *view) buildLogger() *slog.Logger { return slog.New(noteHandler{v}) }

func (h noteHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h noteHandler) Handle(_ context.Context, r slog.Record) error {
	msg := r.Message
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "step" {
			msg = a.Value.String()
		}
		return true
	})
	h.v.mu.Lock()
	h.v.note = "image build: " + msg
	h.v.mu.Unlock()
	return nil
}

func (h noteHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h noteHandler) WithGroup(string) slog.Handler      { return h }

// upRows names the view of `lesson up DIR` and lists the lesson's
// endpoints, each waiting for its image (none when the lesson does not
// load: Up reports why).
func upRows(dir string) (title string, rows []viewRow) {
	l, err := lessonmeta.Load(dir, lessonmeta.Options{})
	if err != nil {
		return "lesson up " + filepath.Base(dir), nil
	}
	for _, e := range l.Endpoints {
		rows = append(rows, viewRow{Name: e.Name, Image: e.Image, Phase: "image", Active: true})
	}
	return "lesson up " + l.Slug, rows
}

// instanceRows lists a running instance's endpoints as they are now.
func instanceRows(ctx context.Context, inst *endpointkit.Instance) []viewRow {
	var rows []viewRow
	for _, e := range inst.Status(ctx) {
		phase := string(e.State)
		if e.State == endpointkit.StateConfigured {
			phase = fmt.Sprintf("configured (stage %d)", e.Stage)
		}
		rows = append(rows, viewRow{Name: e.Name, Image: e.Image, Phase: phase})
	}
	return rows
}

// downRows lists the endpoints of the instance at dir, if its record is
// readable (Teardown works without it).
func downRows(ctx context.Context, dir string, opts endpointkit.Options) []viewRow {
	inst, err := endpointkit.Open(dir, opts)
	if err != nil {
		return nil
	}
	return instanceRows(ctx, inst)
}

// upGoal is where `lesson up` leaves each endpoint.
func upGoal(stage int) string {
	if stage < 0 {
		return "ready"
	}
	return "configured"
}
