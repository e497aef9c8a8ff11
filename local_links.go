package endpointkit

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"time"

	"github.com/endpointkit/endpointkit/qemulaunch"
	"github.com/endpointkit/endpointkit/wiring"
)

var _ LinkChanger = (*localRuntime)(nil)

// rollbackTimeout bounds the undoing of a link add that failed half-way.
const rollbackTimeout = 2 * time.Minute

// AddLink applies the plan with the new link (wiring converges: only the
// link's veth is made), then asks both ends' launchers for a NIC, in
// parallel. A failure undoes what was done: NICs added are removed, the
// veth deleted.
func (r *localRuntime) AddLink(ctx context.Context, p *Placement, k int, ends [2]LinkNIC) ([2]qemulaunch.NIC, error) {
	var nics [2]qemulaunch.NIC
	local := &wiring.Local{StateRoot: filepath.Dir(p.Dir), Logger: r.opts.log()}
	link := p.Wiring.Links[k]
	rollback := func(added [2]bool) error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		defer cancel()
		var errs []error
		for j, e := range ends {
			if added[j] {
				if err := qemulaunch.RemoveNIC(ctx, qemulaunch.StateDir(e.Endpoint.StateDir), e.NIC.Name); err != nil {
					errs = append(errs, fmt.Errorf("endpoint %s: undo the NIC behind %s: %w", e.Endpoint.Name, e.NIC.Name, err))
				}
			}
		}
		if err := local.RemoveLink(ctx, p.Instance, link); err != nil {
			errs = append(errs, err)
		}
		return errors.Join(errs...)
	}
	if _, err := local.Apply(ctx, p.Wiring); err != nil {
		return nics, errors.Join(fmt.Errorf("instance %s: wiring: %w", p.Instance, err), rollback([2]bool{}))
	}
	var errs [2]error
	var wg sync.WaitGroup
	for j, e := range ends {
		wg.Go(func() {
			nics[j], errs[j] = qemulaunch.AddNIC(ctx, qemulaunch.StateDir(e.Endpoint.StateDir), e.NIC)
			if errs[j] != nil {
				errs[j] = fmt.Errorf("endpoint %s: %w", e.Endpoint.Name, errs[j])
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return nics, errors.Join(err, rollback([2]bool{errs[0] == nil, errs[1] == nil}))
	}
	return nics, nil
}

// RemoveLink asks both ends' launchers to remove their NICs, in parallel,
// then removes the link's veth and its entry in the wiring state.
func (r *localRuntime) RemoveLink(ctx context.Context, p *Placement, link wiring.LinkPlan, ends [2]LinkNIC) error {
	var errs [2]error
	var wg sync.WaitGroup
	for j, e := range ends {
		wg.Go(func() {
			err := qemulaunch.RemoveNIC(ctx, qemulaunch.StateDir(e.Endpoint.StateDir), e.NIC.Name)
			if err != nil && !errors.Is(err, qemulaunch.ErrNoNIC) {
				errs[j] = fmt.Errorf("endpoint %s: %w", e.Endpoint.Name, err)
			}
		})
	}
	wg.Wait()
	if err := errors.Join(errs[0], errs[1]); err != nil {
		return err
	}
	local := &wiring.Local{StateRoot: filepath.Dir(p.Dir), Logger: r.opts.log()}
	return local.RemoveLink(ctx, p.Instance, link)
}
