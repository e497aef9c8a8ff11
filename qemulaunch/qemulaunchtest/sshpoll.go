package qemulaunchtest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// PollSSH tries to log in at addr as user every interval until one login
// succeeds (it returns its time) or ctx ends. It is the hand-written
// reference poll of the benchmarks, built to notice the first moment a
// login can succeed:
//
// QEMU's user networking accepts a forwarded connection at once and sends
// the guest its SYN as soon as it knows the guest's MAC address, which it
// learns from the guest's DHCPDISCOVER, before the guest has its address.
// The guest drops that SYN, and user networking retransmits it only
// seconds later. A poll of bounded, one-at-a-time attempts therefore loses
// up to a whole bound on the attempt that was in flight. Here attempts
// overlap (at most 16 at once): each waits up to 300 ms for the server's
// version line, sent as soon as the TCP connection reaches the server; the
// first to get it logs in while the others wait their turn, so at most one
// login at a time loads the guest.
func PollSSH(ctx context.Context, addr, user, pass string, interval time.Duration) (time.Time, error) {
	const bannerWait = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	token := make(chan struct{}, 1) // held by the attempt that is logging in
	token <- struct{}{}
	slots := make(chan struct{}, 16)
	won := make(chan time.Time, 1)
	lastErr := make(chan error, 16)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var last error
	start := func() {
		select {
		case slots <- struct{}{}:
		default: // 16 attempts in flight: skip this tick
			return
		}
		go func() {
			defer func() { <-slots }()
			err := loginAttempt(ctx, addr, user, pass, bannerWait, token)
			if err == nil {
				select {
				case won <- time.Now():
				default:
				}
				return
			}
			select {
			case lastErr <- err:
			default:
			}
		}()
	}
	start()
	for {
		select {
		case t := <-won:
			return t, nil
		case last = <-lastErr:
		case <-tick.C:
			start()
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("ssh %s: %w (last attempt: %v)", addr, ctx.Err(), last)
		}
	}
}

// loginAttempt connects, waits up to bannerWait for the server's version
// line, then takes token and logs in (bounded by 10 s).
func loginAttempt(ctx context.Context, addr, user, pass string, bannerWait time.Duration, token chan struct{}) error {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Now()) })
	defer stop()
	c.SetDeadline(time.Now().Add(bannerWait))
	br := bufio.NewReader(c)
	banner, err := br.ReadString('\n')
	if err != nil {
		return fmt.Errorf("no version line: %w", err)
	}
	select {
	case <-token:
		defer func() { token <- struct{}{} }()
	case <-ctx.Done():
		return ctx.Err()
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	pc := &prefixedConn{Conn: c, r: io.MultiReader(strings.NewReader(banner), br)}
	cc, chans, reqs, err := ssh.NewClientConn(pc, addr, &ssh.ClientConfig{User: user,
		Auth: []ssh.AuthMethod{ssh.Password(pass)}, HostKeyCallback: ssh.InsecureIgnoreHostKey()})
	if err != nil {
		return err
	}
	ssh.NewClient(cc, chans, reqs).Close()
	return nil
}

// prefixedConn reads what was already read from Conn first.
type prefixedConn struct {
	net.Conn
	r io.Reader
}

func (c *prefixedConn) Read(p []byte) (int, error) { return c.r.Read(p) }
