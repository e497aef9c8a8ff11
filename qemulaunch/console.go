package qemulaunch

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"regexp"
	"sync"

	"github.com/endpointkit/endpointkit/internal/logtail"
)

// Console sizes.
const (
	consoleRing    = 64 << 10 // in-memory tail kept for late attachers and error reports
	consoleLogMax  = 1 << 20  // console.log rotates to console.log.1 beyond this
	consoleBacklog = 256      // chunks queued per attached client before it is dropped
	// consoleReplay is how many of the last console lines an attaching
	// client gets first: a screenful, with the prompt waiting at its end.
	consoleReplay = 24
)

// ErrConsoleClosed is returned by WaitFor when the console output ended
// (QEMU exited) before the pattern appeared.
var ErrConsoleClosed = errors.New("qemulaunch: console closed")

// Console is the VM's serial console. Output is kept in a size-bounded log
// file and an in-memory ring, matched line by line against waiters, and
// streamed to any number of clients attached to a unix socket; input from
// every client goes to the guest.
type Console struct {
	log *slog.Logger

	inMu sync.Mutex
	in   io.Writer // QEMU's stdin (the serial port's input)

	mu       sync.Mutex
	ring     []byte
	partial  []byte // current incomplete line
	file     *rotatingFile
	clients  map[*consoleClient]struct{}
	waiters  map[*waiter]struct{}
	ended    bool
	done     chan struct{}
	listener net.Listener
	wg       sync.WaitGroup
}

type waiter struct {
	re *regexp.Regexp
	ch chan string
}

type consoleClient struct {
	conn net.Conn
	out  chan []byte
}

func newConsole(logPath string, in io.Writer, log *slog.Logger) (*Console, error) {
	f, err := openRotating(logPath, consoleLogMax)
	if err != nil {
		return nil, err
	}
	return &Console{
		log: log, in: in, file: f,
		clients: map[*consoleClient]struct{}{},
		waiters: map[*waiter]struct{}{},
		done:    make(chan struct{}),
	}, nil
}

// pump copies QEMU's serial output into the console until EOF.
func (c *Console) pump(r io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			c.feed(append([]byte(nil), buf[:n]...))
		}
		if err != nil {
			break
		}
	}
	c.mu.Lock()
	if len(c.partial) > 0 {
		c.matchLine(c.partial)
		c.partial = nil
	}
	c.ended = true
	for w := range c.waiters {
		close(w.ch)
		delete(c.waiters, w)
	}
	for cl := range c.clients {
		close(cl.out)
		delete(c.clients, cl)
	}
	c.file.Close()
	c.mu.Unlock()
	close(c.done)
}

func (c *Console) feed(p []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.ring = append(c.ring, p...)
	if len(c.ring) > consoleRing {
		c.ring = append(c.ring[:0:0], c.ring[len(c.ring)-consoleRing:]...)
	}
	if _, err := c.file.Write(p); err != nil {
		c.log.Warn("console log write failed", "err", err)
	}
	for cl := range c.clients {
		select {
		case cl.out <- p:
		default:
			c.log.Warn("console client too slow; detaching it")
			close(cl.out)
			delete(c.clients, cl)
		}
	}
	if len(c.waiters) == 0 {
		c.partial = lastPartial(append(c.partial, p...))
		return
	}
	data := append(c.partial, p...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		c.matchLine(data[:i])
		data = data[i+1:]
	}
	c.partial = lastPartial(data)
	if len(c.partial) > 0 {
		c.matchLine(c.partial) // prompts ("login: ") end without a newline
	}
}

// lastPartial keeps only what follows the last newline.
func lastPartial(b []byte) []byte {
	if i := bytes.LastIndexByte(b, '\n'); i >= 0 {
		return append([]byte(nil), b[i+1:]...)
	}
	if len(b) > consoleRing {
		b = b[len(b)-consoleRing:]
	}
	return b
}

// matchLine hands a complete line to waiters; called with c.mu held.
func (c *Console) matchLine(line []byte) {
	s := string(bytes.TrimRight(line, "\r"))
	for w := range c.waiters {
		if w.re.MatchString(s) {
			w.ch <- s
			close(w.ch)
			delete(c.waiters, w)
		}
	}
}

// WaitFor returns the first console line matching re, looking at what is
// already in the ring and then at new output. It returns ctx's error on
// timeout and ErrConsoleClosed when QEMU's output ended first.
func (c *Console) WaitFor(ctx context.Context, re *regexp.Regexp) (string, error) {
	c.mu.Lock()
	for _, line := range bytes.Split(c.ring, []byte("\n")) {
		if s := string(bytes.TrimRight(line, "\r")); re.MatchString(s) {
			c.mu.Unlock()
			return s, nil
		}
	}
	if c.ended {
		c.mu.Unlock()
		return "", ErrConsoleClosed
	}
	w := &waiter{re: re, ch: make(chan string, 1)}
	c.waiters[w] = struct{}{}
	c.mu.Unlock()
	select {
	case s, ok := <-w.ch:
		if !ok {
			return "", ErrConsoleClosed
		}
		return s, nil
	case <-ctx.Done():
		c.mu.Lock()
		delete(c.waiters, w)
		c.mu.Unlock()
		return "", ctx.Err()
	}
}

// Tail returns up to n of the most recent console bytes.
func (c *Console) Tail(n int) []byte {
	c.mu.Lock()
	defer c.mu.Unlock()
	if n > len(c.ring) {
		n = len(c.ring)
	}
	return append([]byte(nil), c.ring[len(c.ring)-n:]...)
}

// Write sends input to the guest's serial port.
func (c *Console) Write(p []byte) (int, error) {
	c.inMu.Lock()
	defer c.inMu.Unlock()
	return c.in.Write(p)
}

// Done is closed when QEMU's console output has ended.
func (c *Console) Done() <-chan struct{} { return c.done }

// serve accepts clients on a unix socket at path. Each client first gets
// the last consoleReplay lines, then live output; what it sends goes to
// the guest.
func (c *Console) serve(path string) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("console socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return fmt.Errorf("console socket: %w", err)
	}
	c.mu.Lock()
	c.listener = l
	c.mu.Unlock()
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.attach(conn)
		}
	}()
	return nil
}

func (c *Console) attach(conn net.Conn) {
	cl := &consoleClient{conn: conn, out: make(chan []byte, consoleBacklog)}
	c.mu.Lock()
	replay := append([]byte(nil), logtail.LastLines(c.ring, consoleReplay)...)
	if c.ended {
		c.mu.Unlock()
		conn.Write(replay)
		conn.Close()
		return
	}
	cl.out <- replay
	c.clients[cl] = struct{}{}
	c.mu.Unlock()
	c.wg.Add(2)
	go func() { // output
		defer c.wg.Done()
		defer conn.Close()
		for p := range cl.out {
			if _, err := conn.Write(p); err != nil {
				break
			}
		}
		c.detach(cl)
	}()
	go func() { // input
		defer c.wg.Done()
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if n > 0 {
				if _, werr := c.Write(buf[:n]); werr != nil {
					break
				}
			}
			if err != nil {
				break
			}
		}
		c.detach(cl)
		conn.Close()
	}()
}

func (c *Console) detach(cl *consoleClient) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.clients[cl]; ok {
		close(cl.out)
		delete(c.clients, cl)
	}
}

// closeServer stops accepting, disconnects clients and removes the socket.
func (c *Console) closeServer(path string) {
	c.mu.Lock()
	if c.listener != nil {
		c.listener.Close()
	}
	for cl := range c.clients {
		close(cl.out)
		delete(c.clients, cl)
		cl.conn.Close()
	}
	c.mu.Unlock()
	c.wg.Wait()
	os.Remove(path)
}

// rotatingFile is an append-only log that keeps at most two files of max
// bytes: when path reaches max it becomes path.1 and a new path starts.
type rotatingFile struct {
	path string
	max  int64
	f    *os.File
	size int64
}

func openRotating(path string, max int64) (*rotatingFile, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return nil, fmt.Errorf("console log: %w", err)
	}
	os.Remove(path + ".1")
	return &rotatingFile{path: path, max: max, f: f}, nil
}

func (r *rotatingFile) Write(p []byte) (int, error) {
	if r.f == nil {
		return 0, os.ErrClosed
	}
	if r.size+int64(len(p)) > r.max && r.size > 0 {
		r.f.Close()
		if err := os.Rename(r.path, r.path+".1"); err != nil {
			return 0, err
		}
		f, err := os.OpenFile(r.path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
		if err != nil {
			r.f = nil
			return 0, err
		}
		r.f, r.size = f, 0
	}
	n, err := r.f.Write(p)
	r.size += int64(n)
	return n, err
}

func (r *rotatingFile) Close() error {
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	return err
}
