package endpointkit

import (
	"context"
	"sync"
	"time"
)

// stopPoll is how often teardown looks whether an endpoint has stopped.
const stopPoll = 50 * time.Millisecond

// watchStops reports, endpoint by endpoint, the stop of a recorded
// instance while its runtime removes it: StepTeardown for each endpoint
// running now, StepStopped for one that is not, and StepStopped again as
// soon as the runtime no longer sees an endpoint running. It asks the
// runtime (Observe), so it works for any runtime. Call the returned
// function when the removal has ended; removed says it succeeded, and
// reports whatever is left as stopped. A nil inst (no record) reports
// nothing.
func watchStops(ctx context.Context, rt Runtime, inst *Instance, rep reporter) func(removed bool) {
	if inst == nil {
		return func(bool) {}
	}
	var pending []RunningEndpoint
	for _, e := range inst.Endpoints {
		if rt.Observe(ctx, e).Running {
			pending = append(pending, e)
			rep.report(StepTeardown, e.Name, e.Name+" stopping", nil)
		} else {
			rep.report(StepStopped, e.Name, e.Name+": not running", nil)
		}
	}
	var mu sync.Mutex // guards pending
	check := func(all bool) {
		mu.Lock()
		defer mu.Unlock()
		left := pending[:0]
		for _, e := range pending {
			if all || !rt.Observe(ctx, e).Running {
				rep.report(StepStopped, e.Name, e.Name+" stopped", nil)
			} else {
				left = append(left, e)
			}
		}
		pending = left
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(stopPoll)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				check(false)
			}
		}
	}()
	return func(removed bool) {
		close(done)
		<-finished
		check(removed)
	}
}
