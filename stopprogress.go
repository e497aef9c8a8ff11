package endpointkit

import (
	"maps"
	"slices"
	"strings"
)

// stopProgress reports, endpoint by endpoint, the stop of an instance's
// processes during teardown: StepTeardown when an endpoint's launcher is
// asked to stop, StepStopped once none of its processes is left. A nil
// *stopProgress reports nothing.
type stopProgress struct {
	rep     reporter
	names   []string        // endpoints the instance record lists (may be empty)
	pending map[string]bool // endpoints with processes still running
}

// begin reports the endpoints being stopped (those with processes in
// procs) and, as already stopped, the recorded ones without any.
func (s *stopProgress) begin(procs []instanceProcess) {
	if s == nil {
		return
	}
	s.pending = map[string]bool{}
	for _, p := range procs {
		if p.endpoint != "" {
			s.pending[p.endpoint] = true
		}
	}
	all := slices.Clone(s.names)
	for ep := range s.pending {
		if !slices.Contains(all, ep) {
			all = append(all, ep)
		}
	}
	slices.Sort(all)
	for _, ep := range all {
		if s.pending[ep] {
			s.rep.report(StepTeardown, ep, ep+" stopping", nil)
		} else {
			s.rep.report(StepStopped, ep, ep+": not running", nil)
		}
	}
}

// observe reports the endpoints none of whose processes is in live any
// more (an exited process awaiting its parent's wait counts as gone).
func (s *stopProgress) observe(live []instanceProcess) {
	if s == nil || len(s.pending) == 0 {
		return
	}
	running := map[string]bool{}
	for _, p := range live {
		if !zombie(p.pid) {
			running[p.endpoint] = true
		}
	}
	for _, ep := range slices.Sorted(maps.Keys(s.pending)) {
		if !running[ep] {
			delete(s.pending, ep)
			s.rep.report(StepStopped, ep, ep+" stopped", nil)
		}
	}
}

// endpointIn returns the endpoint whose state directory (marker + EP) a
// NUL-separated command line names first, or "".
func endpointIn(cmdline, marker string) string {
	_, rest, ok := strings.Cut(cmdline, marker)
	if !ok {
		return ""
	}
	if i := strings.IndexAny(rest, "/,\x00"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}
