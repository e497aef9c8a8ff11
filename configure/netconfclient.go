package configure

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"github.com/Juniper/go-netconf/netconf"
	"golang.org/x/crypto/ssh"
)

// NETCONF capabilities the configurators look at.
const (
	capCandidate       = "urn:ietf:params:netconf:capability:candidate:1.0"
	capValidate10      = "urn:ietf:params:netconf:capability:validate:1.0"
	capValidate11      = "urn:ietf:params:netconf:capability:validate:1.1"
	capWritableRunning = "urn:ietf:params:netconf:capability:writable-running:1.0"
	// capYumaNCX identifies yuma123's netconfd (see transaction).
	capYumaNCX = "http://netconfcentral.org/ns/yuma-ncx"
)

const eom = "]]>]]>"

// NetconfClient is a NETCONF session over SSH, built on go-netconf's
// Session (hello, RPC framing, rpc-reply and rpc-error decoding) with a
// transport of our own so that every call honours a context: the SSH
// connection is dialled with the context and closed when a call's
// context ends.
type NetconfClient struct {
	client *ssh.Client
	tr     *ncTransport
	s      *netconf.Session
	caps   map[string]bool
	mu     sync.Mutex // one RPC at a time
}

// DialNetconf opens a NETCONF session on t's NETCONF port (host key
// verified, transient failures retried) and exchanges hellos.
func DialNetconf(ctx context.Context, t Target, o DialOptions) (*NetconfClient, error) {
	c, err := dialSSH(ctx, t, t.NetconfAddr(), o)
	if err != nil {
		return nil, err
	}
	nc, err := newNetconfClient(ctx, c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return nc, nil
}

func newNetconfClient(ctx context.Context, c *ssh.Client) (*NetconfClient, error) {
	stop := closeOnDone(ctx, c)
	defer stop()
	sess, err := c.NewSession()
	if err != nil {
		return nil, fmt.Errorf("netconf: ssh session: %w", err)
	}
	w, err := sess.StdinPipe()
	if err != nil {
		return nil, err
	}
	r, err := sess.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := sess.RequestSubsystem("netconf"); err != nil {
		return nil, fmt.Errorf("netconf: the server offers no netconf subsystem: %w", err)
	}
	tr := newTransport(sess, w, r)
	s := netconf.NewSession(tr) // reads the server hello, sends ours (base:1.0)
	if tr.helloErr != nil {
		return nil, fmt.Errorf("netconf hello: %w", tr.helloErr)
	}
	if len(s.ServerCapabilities) == 0 {
		return nil, errors.New("netconf hello: the server announced no capabilities")
	}
	nc := &NetconfClient{client: c, tr: tr, s: s, caps: map[string]bool{}}
	for _, cp := range s.ServerCapabilities {
		cp = strings.TrimSpace(cp)
		if i := strings.IndexByte(cp, '?'); i >= 0 {
			cp = cp[:i]
		}
		nc.caps[cp] = true
	}
	if err := tr.sync(ctx); err != nil {
		return nil, err
	}
	return nc, nil
}

// Close ends the session and the connection.
func (n *NetconfClient) Close() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	// Polite close: wait briefly for the reply so the server sees a
	// clean end of session.
	if n.tr.Send([]byte(`<rpc message-id="endpointkit-close" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><close-session/></rpc>`)) == nil {
		select {
		case <-n.tr.msgs:
		case <-time.After(time.Second):
		}
	}
	n.tr.Close()
	return n.client.Close()
}

// Capabilities lists the server's capabilities (without parameters).
func (n *NetconfClient) Capabilities() []string {
	out := make([]string, 0, len(n.caps))
	for c := range n.caps {
		out = append(out, c)
	}
	return out
}

// HasCapability reports whether the server announced capability c.
func (n *NetconfClient) HasCapability(c string) bool { return n.caps[c] }

// Exec sends one RPC (the XML inside <rpc>) and returns the reply's
// content. An rpc-error comes back as an [*RPCError] naming op.
func (n *NetconfClient) Exec(ctx context.Context, op, body string) (string, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	stop := closeOnDone(ctx, n.client)
	reply, err := n.s.Exec(netconf.RawMethod(body))
	if !stop() {
		return "", fmt.Errorf("netconf %s: %w", op, ctx.Err())
	}
	var re *netconf.RPCError
	if errors.As(err, &re) {
		return reply.Data, &RPCError{Operation: op, Type: re.Type, Tag: strings.TrimSpace(re.Tag), Severity: re.Severity,
			Path: strings.TrimSpace(re.Path), Message: strings.TrimSpace(re.Message), Info: re.Info}
	}
	if err != nil {
		return "", fmt.Errorf("netconf %s: %w", op, err)
	}
	return reply.Data, nil
}

// GetConfig returns the <data> of a get-config on source ("running",
// "candidate"), optionally with a subtree filter.
func (n *NetconfClient) GetConfig(ctx context.Context, source, subtree string) (string, error) {
	body := "<get-config><source><" + source + "/></source>"
	if subtree != "" {
		body += `<filter type="subtree">` + subtree + "</filter>"
	}
	return n.Exec(ctx, "get-config", body+"</get-config>")
}

// ncTransport implements go-netconf's Transport over an SSH session with
// end-of-message framing (base:1.0, the only version go-netconf
// announces). A reader goroutine splits messages onto a channel, so reads
// can be abandoned when the connection is closed.
type ncTransport struct {
	sess     *ssh.Session
	w        io.WriteCloser
	msgs     chan []byte
	readErr  error // set before msgs is closed
	helloErr error
}

var _ netconf.Transport = (*ncTransport)(nil)

func newTransport(sess *ssh.Session, w io.WriteCloser, r io.Reader) *ncTransport {
	t := &ncTransport{sess: sess, w: w, msgs: make(chan []byte, 4)}
	go t.readLoop(r)
	return t
}

func (t *ncTransport) readLoop(r io.Reader) {
	defer close(t.msgs)
	var buf bytes.Buffer
	chunk := make([]byte, 32*1024)
	for {
		n, err := r.Read(chunk)
		buf.Write(chunk[:n])
		for {
			i := bytes.Index(buf.Bytes(), []byte(eom))
			if i < 0 {
				break
			}
			msg := append([]byte(nil), buf.Bytes()[:i]...)
			buf.Next(i + len(eom))
			t.msgs <- msg
		}
		if err != nil {
			if err == io.EOF {
				err = errors.New("the server closed the session")
			}
			t.readErr = err
			return
		}
	}
}

func (t *ncTransport) Send(b []byte) error {
	if _, err := t.w.Write(append(b, eom...)); err != nil {
		return fmt.Errorf("netconf send: %w", err)
	}
	return nil
}

func (t *ncTransport) Receive() ([]byte, error) {
	m, ok := <-t.msgs
	if !ok {
		return nil, fmt.Errorf("netconf receive: %w", t.readErr)
	}
	return m, nil
}

func (t *ncTransport) ReceiveHello() (*netconf.HelloMessage, error) {
	h := &netconf.HelloMessage{}
	raw, err := t.Receive()
	if err == nil {
		err = xml.Unmarshal(raw, h)
	}
	t.helloErr = err
	return h, err
}

func (t *ncTransport) SendHello(h *netconf.HelloMessage) error {
	raw, err := xml.Marshal(h)
	if err != nil {
		return err
	}
	return t.Send(append([]byte(xml.Header), raw...))
}

func (t *ncTransport) Close() error {
	t.w.Close()
	return t.sess.Close()
}

// sync makes sure the server has taken our hello before the first real
// RPC: yuma123's netconfd drops an RPC that arrives in the same read as
// the client hello. It sends a harmless probe (a get-config with an empty
// filter, which selects nothing) until one is answered, waiting for the
// reply to the latest probe so that no stray reply is left behind.
func (t *ncTransport) sync(ctx context.Context) error {
	const tries = 8
	wait := 100 * time.Millisecond
	for i := 1; i <= tries; i++ {
		id := fmt.Sprintf("endpointkit-sync-%d", i)
		probe := `<rpc message-id="` + id + `" xmlns="urn:ietf:params:xml:ns:netconf:base:1.0"><get-config><source><running/></source><filter type="subtree"/></get-config></rpc>`
		if err := t.Send([]byte(probe)); err != nil {
			return err
		}
		timer := time.NewTimer(wait)
	recv:
		for {
			select {
			case m, ok := <-t.msgs:
				if !ok {
					timer.Stop()
					return fmt.Errorf("netconf: %w", t.readErr)
				}
				if bytes.Contains(m, []byte(`"`+id+`"`)) {
					timer.Stop()
					return nil
				}
				// A reply to an earlier probe: ours is still coming.
			case <-timer.C:
				break recv
			case <-ctx.Done():
				timer.Stop()
				return fmt.Errorf("netconf: %w", ctx.Err())
			}
		}
		wait *= 2
	}
	return fmt.Errorf("netconf: the server answered none of %d probe RPCs", tries)
}
