package configure

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cenkalti/backoff/v5"
	"golang.org/x/crypto/ssh"
)

// ReachOptions bound [WaitReachable].
type ReachOptions struct {
	// Timeout is the whole wait (default 600 s); Attempt one handshake
	// (default 5 s). Both are multiplied by Scale.
	Timeout time.Duration
	Attempt time.Duration
	// Scale stretches the deadlines for slow guests, e.g. the launcher's
	// TCG multiplier; values below 1 count as 1.
	Scale float64
	// Logger receives one debug record per failed attempt (nil: discard).
	Logger *slog.Logger
}

func (o ReachOptions) scaled() (total, attempt time.Duration) {
	total, attempt = o.Timeout, o.Attempt
	if total <= 0 {
		total = 600 * time.Second
	}
	if attempt <= 0 {
		attempt = 5 * time.Second
	}
	if o.Scale > 1 {
		total = time.Duration(float64(total) * o.Scale)
		attempt = time.Duration(float64(attempt) * o.Scale)
	}
	return total, attempt
}

// WaitReachable waits until an SSH server answers at addr: each attempt is
// a real SSH handshake (a TCP accept proves nothing behind QEMU's port
// forwarding), offering no credentials; a server that rejects the
// authentication is up. Attempts back off exponentially up to 5 s apart.
// The error wraps [ErrUnreachable] and says what the last attempt saw.
func WaitReachable(ctx context.Context, addr string, o ReachOptions) error {
	total, attempt := o.scaled()
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithTimeout(ctx, total)
	defer cancel()
	cfg := &ssh.ClientConfig{
		User: "endpointkit-probe",
		// Only liveness is tested and no secret is sent: the key is
		// checked when configuring.
		HostKeyCallback: ssh.InsecureIgnoreHostKey(),
	}
	var last error
	tries := 0
	op := func() (struct{}, error) {
		tries++
		actx, cancel := context.WithTimeout(ctx, attempt)
		defer cancel()
		c, err := dialOnce(actx, addr, cfg)
		if err == nil {
			c.Close()
			return struct{}{}, nil
		}
		if errors.Is(err, ErrAuth) {
			return struct{}{}, nil
		}
		last = err
		log.Debug("endpoint not reachable yet", "addr", addr, "attempt", tries, "error", err)
		return struct{}{}, err
	}
	eb := backoff.NewExponentialBackOff()
	eb.InitialInterval = 100 * time.Millisecond
	eb.MaxInterval = 5 * time.Second
	start := time.Now()
	_, err := backoff.Retry(ctx, op, backoff.WithBackOff(eb), backoff.WithMaxElapsedTime(total))
	if err == nil {
		return nil
	}
	if last == nil {
		last = err
	}
	return fmt.Errorf("%w: no SSH handshake at %s after %s and %d attempts (deadline %s); last attempt: %v",
		ErrUnreachable, addr, time.Since(start).Round(time.Millisecond), tries, total, last)
}
