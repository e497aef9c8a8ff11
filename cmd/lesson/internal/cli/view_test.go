package cli

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/endpointkit/endpointkit"
	"github.com/endpointkit/endpointkit/internal/ptytest"
)

// fakeClock is a view's clock under test.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// play feeds events to a view, each at its offset from the start, and
// returns the screen a terminal shows afterwards.
func play(t *testing.T, v *view, clock *fakeClock, t0 time.Time, out *bytes.Buffer, events []timed) []string {
	t.Helper()
	for _, e := range events {
		clock.t = t0.Add(e.at)
		v.event(e.Event)
	}
	v.mu.Lock()
	v.draw(true)
	v.mu.Unlock()
	return ptytest.Render(out.String())
}

func wantScreen(t *testing.T, when string, got, want []string) {
	t.Helper()
	if !slices.Equal(got, want) {
		t.Errorf("screen %s:\n%s\nwant:\n%s", when, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

type timed struct {
	at time.Duration
	endpointkit.Event
}

func ev(at float64, step endpointkit.Step, ep, msg string) timed {
	return timed{time.Duration(at * float64(time.Second)), endpointkit.Event{Step: step, Endpoint: ep, Message: msg}}
}

func newTestView(title, goal string, rows ...viewRow) (*view, *fakeClock, time.Time, *bytes.Buffer) {
	var out bytes.Buffer
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clock := &fakeClock{t0}
	v := newView(&out, title, goal, false)
	v.now, v.start = clock.now, t0
	for _, r := range rows {
		v.add(r)
	}
	return v, clock, t0, &out
}

// lesson up: one line per endpoint, redrawn in place through image,
// booting, ready, configuring and configured, with the steps' times; a
// failed boot stays red (✘) through the teardown that follows.
func TestViewUp(t *testing.T) {
	v, clock, t0, out := newTestView("lesson up pair", "configured",
		viewRow{Name: "a", Image: "tiny", Phase: "image", Active: true},
		viewRow{Name: "bb", Image: "debian", Phase: "image", Active: true})
	img := ev(0.5, endpointkit.StepImage, "", "image tiny found: /x")
	img.Image = "tiny"
	screen := play(t, v, clock, t0, out, []timed{
		ev(0.1, endpointkit.StepValidate, "", "lesson pair: 2 endpoints, 1 links, 1 stages"),
		img,
	})
	want := []string{
		"lesson up pair  0/2 configured  0.5s",
		" · a   tiny    waiting",
		" … bb  debian  image 0.5s",
		"  image tiny found: /x",
	}
	wantScreen(t, "after the first image", screen, want)
	img2 := ev(1, endpointkit.StepImage, "", "image debian built: /y")
	img2.Image = "debian"
	failed := ev(12, endpointkit.StepFailed, "bb", "bb did not boot")
	failed.Err = errors.New("endpoint bb: not ready after 10s\n--- console tail ---\nstuff")
	screen = play(t, v, clock, t0, out, []timed{
		img2,
		ev(1.2, endpointkit.StepWire, "", "2 namespaces, 1 links, management 10.0.0.0/24"),
		ev(1.5, endpointkit.StepBoot, "a", "a booting (tiny, pid 1)"),
		ev(1.5, endpointkit.StepBoot, "bb", "bb booting (debian, pid 2)"),
		ev(4.4, endpointkit.StepReady, "a", "a ready in 2.9s"),
		ev(4.4, endpointkit.StepConfigure, "a", "a: stage 0 (ssh)"),
		ev(5.5, endpointkit.StepConfigured, "a", "a: stage 0 configured in 1.1s"),
		failed,
		ev(12, endpointkit.StepTeardown, "", "removing instance pair"),
		ev(12, endpointkit.StepTeardown, "bb", "bb stopping"),
	})
	want = []string{
		"lesson up pair  1/2 configured  12.0s",
		" ✔ a   tiny    configured (boot 2.9s, config 1.1s)",
		" ✘ bb  debian  failed booting: endpoint bb: not ready after 10s · stopping 0.0s",
		"  removing instance pair",
	}
	wantScreen(t, "at the end", screen, want)
}

// A restarted endpoint (issue #14's supervision reports it booting again)
// starts a new life on its line; an endpoint no row named gets a line.
func TestViewRestartAndUnknown(t *testing.T) {
	v, clock, t0, out := newTestView("lesson restart r1", "configured",
		viewRow{Name: "r1", Image: "tiny", Phase: "configured (stage 0)"})
	screen := play(t, v, clock, t0, out, []timed{
		ev(0, endpointkit.StepTeardown, "r1", "r1 stopping"),
		ev(1, endpointkit.StepStopped, "r1", "r1 stopped"),
		ev(1, endpointkit.StepBoot, "r1", "r1 booting"),
		ev(3, endpointkit.StepReady, "r1", "r1 ready in 2.0s"),
		ev(3, endpointkit.StepConfigure, "r1", "r1: stage 0 (ssh)"),
		ev(4, endpointkit.StepConfigured, "r1", "r1: stage 0 configured in 1.0s"),
		ev(4, endpointkit.Step("healed"), "r2", "r2: link eth1 re-stitched"),
	})
	want := []string{
		"lesson restart r1  1/2 configured  4.0s",
		" ✔ r1  tiny  configured (boot 2.0s, config 1.0s)",
		" … r2        healed link eth1 re-stitched 0.0s",
	}
	wantScreen(t, "at the end", screen, want)
}

// lesson down: each endpoint stops on its own line; one that was not
// running says so.
func TestViewDown(t *testing.T) {
	v, clock, t0, out := newTestView("lesson down pair", "stopped",
		viewRow{Name: "a", Image: "tiny", Phase: "configured (stage 0)"},
		viewRow{Name: "b", Image: "tiny", Phase: "down"})
	screen := play(t, v, clock, t0, out, []timed{
		ev(0, endpointkit.StepTeardown, "", "removing instance pair"),
		ev(0, endpointkit.StepTeardown, "a", "a stopping"),
		ev(0, endpointkit.StepStopped, "b", "b: not running"),
		ev(1.3, endpointkit.StepStopped, "a", "a stopped"),
		ev(1.5, endpointkit.StepDone, "", "instance pair removed"),
	})
	want := []string{
		"lesson down pair  2/2 stopped  1.5s",
		" ✔ a  tiny  stopped (stop 1.3s)",
		" ✔ b  tiny  stopped (not running)",
		"  instance pair removed",
	}
	wantScreen(t, "at the end", screen, want)
}

// Lines are cut to the terminal's width (a wrapped line would break the
// redraw in place), and colour marks the failure.
func TestViewWidthAndColour(t *testing.T) {
	v, clock, t0, out := newTestView("lesson up x", "configured", viewRow{Name: "r1", Image: "tiny", Phase: "booting", Active: true})
	v.color = true
	v.width = func() int { return 30 }
	f := ev(1, endpointkit.StepFailed, "r1", "r1 did not boot")
	f.Err = errors.New(strings.Repeat("very long reason ", 10))
	screen := play(t, v, clock, t0, out, []timed{f})
	for _, l := range screen {
		if w := len([]rune(l)); w > 29 {
			t.Errorf("line %q is %d columns wide, over 29", l, w)
		}
	}
	if !strings.Contains(out.String(), ansiRed+"failed booting") {
		t.Errorf("failure not in red: %q", out.String())
	}
}
