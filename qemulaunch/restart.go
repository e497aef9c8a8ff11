package qemulaunch

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cenkalti/backoff/v5"
	"github.com/google/renameio/v2"
)

// RestartPolicy says when [Supervise] starts a VM again after it ended
// without being asked to.
type RestartPolicy string

// Restart policies. The default ("") is RestartOnFailure.
const (
	// RestartOnFailure restarts a VM that had been ready and then ended
	// unasked: QEMU killed or crashed, a guest panic, a guest power-off
	// nobody asked for. A VM that never became ready is not restarted (a
	// broken image or lesson does not heal by retrying).
	RestartOnFailure RestartPolicy = "on-failure"
	// RestartAlways also restarts a VM whose start-up or readiness
	// failed.
	RestartAlways RestartPolicy = "always"
	// RestartNever leaves a VM that ended down; the launcher exits.
	RestartNever RestartPolicy = "never"
)

// ParseRestartPolicy reads a policy name ("" is on-failure). The error
// wraps [ErrUsage].
func ParseRestartPolicy(s string) (RestartPolicy, error) {
	switch p := RestartPolicy(s); p {
	case "", RestartOnFailure, RestartAlways, RestartNever:
		return p, nil
	}
	return "", fmt.Errorf("%w: restart policy %q: want on-failure, always or never", ErrUsage, s)
}

// orDefault is the policy with "" read as on-failure.
func (p RestartPolicy) orDefault() RestartPolicy {
	if p == "" {
		return RestartOnFailure
	}
	return p
}

// DefaultMaxRestarts bounds the restarts in a row (without the VM staying
// ready for [StableAfter] in between) before the launcher gives up.
const DefaultMaxRestarts = 5

// StableAfter is how long a restarted VM must stay ready for its restarts
// in a row (and the backoff) to start again from zero.
const StableAfter = 2 * time.Minute

// Restarts is the launcher's record of its restarts, in the state
// directory's restarts file, for whoever shows an endpoint's state (the
// lesson orchestration's Observe, `lesson status`).
type Restarts struct {
	// Count is how many times the VM was started again by this launcher
	// (on failure or on request).
	Count int `json:"count"`
	// LastExit says how the VM ended before the last restart ("died
	// (signal killed)", "restart requested", "readiness: …").
	LastExit string    `json:"lastExit"`
	At       time.Time `json:"at"` // when the last restart began
}

// ReadRestarts reads the restarts file of a state directory; a launcher
// that never restarted has none (zero Restarts, no error).
func ReadRestarts(dir StateDir) (Restarts, error) {
	var r Restarts
	raw, err := os.ReadFile(dir.Restarts())
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return r, fmt.Errorf("%s: %w", dir.Restarts(), err)
	}
	return r, nil
}

func writeRestarts(dir StateDir, r Restarts) error {
	raw, err := json.Marshal(r)
	if err != nil {
		return err
	}
	return renameio.WriteFile(dir.Restarts(), append(raw, '\n'), 0o644)
}

// RestartRequest asks a supervising launcher to restart its VM now
// (`endpoint run` turns SIGUSR1 into one, SIGUSR2 into one with Reset).
type RestartRequest struct {
	// Reset starts the guest on a fresh overlay (its disk as the image
	// has it) instead of the one it wrote to.
	Reset bool
}

// restartBackoff is the wait before each restart in a row: none before
// the first (a killed endpoint is back as fast as it boots), then 1 s,
// 2 s, 4 s … up to 30 s, with 10 % jitter.
type restartBackoff struct {
	eb    *backoff.ExponentialBackOff
	inRow int
}

func newRestartBackoff() *restartBackoff {
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval, eb.Multiplier, eb.MaxInterval, eb.RandomizationFactor = time.Second, 2, 30*time.Second, 0.1
	return &restartBackoff{eb: eb}
}

// next counts one more restart in a row and returns the wait before it.
func (b *restartBackoff) next() time.Duration {
	b.inRow++
	if b.inRow == 1 {
		return 0
	}
	return b.eb.NextBackOff()
}

// reset starts again from zero (the VM was stable).
func (b *restartBackoff) reset() {
	b.inRow = 0
	b.eb.Reset()
}
