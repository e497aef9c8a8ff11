package qemulaunch

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"time"
)

// The control socket. A supervising launcher ([Supervise]) owns QEMU's QMP
// connection and the TAP stitching in the endpoint's namespace, so
// whoever wants the running VM changed asks the launcher: it listens on
// the state directory's control.sock ([StateDir.ControlSocket]) for one
// JSON request per connection and answers with one JSON reply. [AddNIC]
// and [RemoveNIC] are the client side; the requests run in the launcher
// whether or not the asker waits for the reply, and each either completes
// or leaves the VM as it was.

// ErrNoControl: no launcher answers on the state directory's control
// socket (it is not running, is still starting, or predates it).
var ErrNoControl = errors.New("qemulaunch: no launcher answers on the control socket")

// ErrBusy: the launcher has no VM to change at the moment (it is starting
// or restarting one, or stopping); ask again once the endpoint is ready.
var ErrBusy = errors.New("qemulaunch: the launcher's VM is not running")

// controlTimeout bounds one request inside the launcher (a NIC removal
// waits for the guest to release the NIC).
const controlTimeout = 3 * time.Minute

// controlRequest is one request on the control socket.
type controlRequest struct {
	Op        string `json:"op"` // opAddNIC, opRemoveNIC
	Interface string `json:"interface"`
	TAP       string `json:"tap,omitempty"`
	MAC       string `json:"mac,omitempty"`
	MTU       int    `json:"mtu,omitempty"`
}

const (
	opAddNIC    = "add-nic"
	opRemoveNIC = "remove-nic"
)

// controlReply is the answer: NIC for opAddNIC, or an error whose Kind
// names the sentinel it wraps.
type controlReply struct {
	NIC   *NIC   `json:"nic,omitempty"`
	Error string `json:"error,omitempty"`
	Kind  string `json:"kind,omitempty"`
}

// Error kinds: the sentinels an error crosses the socket as.
var controlKinds = map[string]error{
	"no-hotplug": ErrNoHotplug,
	"no-nic":     ErrNoNIC,
	"busy":       ErrBusy,
	"config":     ErrConfig,
}

// AddNIC asks the launcher supervising the VM of state directory dir to
// add a data NIC behind container interface it.Name, which must exist in
// the VM's namespace (the orchestration cables it first): the launcher
// creates and stitches its TAP as at boot and hot-plugs the NIC over QMP
// where the image's NIC layout puts data NIC N for ethN (see
// [VM.AddNIC]). it.MAC is required; TAP and MTU default as in [Config].
// The guest still has to bring the NIC up. Errors wrap ErrNoControl,
// ErrBusy, ErrNoHotplug or ErrConfig.
func AddNIC(ctx context.Context, dir StateDir, it Interface) (NIC, error) {
	var r controlReply
	err := control(ctx, dir, controlRequest{Op: opAddNIC, Interface: it.Name, TAP: it.TAP, MAC: it.MAC.String(), MTU: it.MTU}, &r)
	if err != nil {
		return NIC{}, err
	}
	if r.NIC == nil {
		return NIC{}, fmt.Errorf("qemulaunch: %s: the launcher added NIC %s without describing it", dir, it.Name)
	}
	return *r.NIC, nil
}

// RemoveNIC asks the launcher supervising the VM of state directory dir
// to remove the data NIC behind container interface name: the guest
// releases it (QMP device_del, then the DEVICE_DELETED event), then its
// back end, stitch and TAP go (see [VM.RemoveNIC]). A NIC the VM does not
// have is an error wrapping ErrNoNIC, so a caller repeating a removal can
// tell it is done.
func RemoveNIC(ctx context.Context, dir StateDir, name string) error {
	return control(ctx, dir, controlRequest{Op: opRemoveNIC, Interface: name}, &controlReply{})
}

// control sends one request and reads the reply into r; an error reply is
// returned as an error wrapping its kind's sentinel.
func control(ctx context.Context, dir StateDir, req controlRequest, r *controlReply) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", dir.ControlSocket())
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrNoControl, dir, err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Now()) })
	defer stop()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return fmt.Errorf("qemulaunch: %s: control request: %w", dir, err)
	}
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(r); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("qemulaunch: %s: %s %s: %w (the launcher goes on with it)", dir, req.Op, req.Interface, ctx.Err())
		}
		return fmt.Errorf("qemulaunch: %s: control reply: %w", dir, err)
	}
	if r.Error == "" {
		return nil
	}
	if kind, ok := controlKinds[r.Kind]; ok {
		return fmt.Errorf("%w: %s", kind, strings.TrimPrefix(r.Error, kind.Error()+": "))
	}
	return errors.New(r.Error)
}

// nicChanger is what the control socket changes: the supervised VM.
type nicChanger interface {
	AddNIC(ctx context.Context, it Interface) (NIC, error)
	RemoveNIC(ctx context.Context, name string) error
}

// controlServer serves a state directory's control socket.
type controlServer struct {
	ln  net.Listener
	log *slog.Logger
	// target returns what to change now; nil while there is no VM.
	target func() nicChanger
	wg     sync.WaitGroup
}

// serveControl listens on dir's control socket (replacing a stale one)
// and serves it until close.
func serveControl(dir StateDir, log *slog.Logger, target func() nicChanger) (*controlServer, error) {
	path := dir.ControlSocket()
	os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	os.Chmod(path, 0o600)
	s := &controlServer{ln: ln, log: log, target: target}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *controlServer) accept() {
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.wg.Go(func() { s.serve(conn) })
	}
}

// serve answers one request. The request runs to its end even when the
// asker hangs up: a half-done change is never left behind.
func (s *controlServer) serve(conn net.Conn) {
	defer conn.Close()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	var req controlRequest
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&req); err != nil {
		json.NewEncoder(conn).Encode(controlReply{Error: "bad request: " + err.Error()})
		return
	}
	conn.SetReadDeadline(time.Time{})
	ctx, cancel := context.WithTimeout(context.Background(), controlTimeout)
	defer cancel()
	reply := s.handle(ctx, req)
	s.log.Info("control request", "op", req.Op, "interface", req.Interface, "error", reply.Error)
	json.NewEncoder(conn).Encode(reply)
}

func (s *controlServer) handle(ctx context.Context, req controlRequest) controlReply {
	t := s.target()
	if t == nil {
		return errorReply(fmt.Errorf("%w: it is starting, restarting or stopping; ask again once it is ready", ErrBusy))
	}
	switch req.Op {
	case opAddNIC:
		it := Interface{Name: req.Interface, TAP: req.TAP, MTU: req.MTU}
		if req.MAC != "" {
			mac, err := net.ParseMAC(req.MAC)
			if err != nil {
				return errorReply(configErr("MAC", "%q: %v", req.MAC, err))
			}
			it.MAC = mac
		}
		nic, err := t.AddNIC(ctx, it)
		if err != nil {
			return errorReply(err)
		}
		return controlReply{NIC: &nic}
	case opRemoveNIC:
		return errorReply(t.RemoveNIC(ctx, req.Interface))
	}
	return controlReply{Error: fmt.Sprintf("unknown request %q", req.Op)}
}

// errorReply is the reply for err (nil: success), its kind the first
// sentinel it wraps.
func errorReply(err error) controlReply {
	if err == nil {
		return controlReply{}
	}
	r := controlReply{Error: err.Error()}
	for kind, sentinel := range controlKinds {
		if errors.Is(err, sentinel) {
			r.Kind = kind
		}
	}
	return r
}

// close stops serving, waits for requests in flight and removes the
// socket.
func (s *controlServer) close(dir StateDir) {
	s.ln.Close()
	s.wg.Wait()
	os.Remove(dir.ControlSocket())
}

// liveNICs is what the control socket changes across a launcher's life:
// the VM of the current run (restarts in place start a new one) and the
// data interfaces a restart starts it with, so that NICs added or removed
// at run time stay added or removed.
type liveNICs struct {
	dir StateDir
	log *slog.Logger

	mu  sync.Mutex
	vm  *VM
	ifs []Interface // nil until a NIC was added or removed
	ctl *controlServer
}

// serve makes vm the target, opening the control socket on the first run.
// A socket that cannot be opened is reported, not fatal: the VM runs on
// with the NICs it booted with.
func (l *liveNICs) serve(vm *VM, name string, stderr io.Writer) {
	l.mu.Lock()
	l.vm = vm
	opened := l.ctl != nil
	l.mu.Unlock()
	if opened {
		return
	}
	log := l.log
	if log == nil {
		log = discard()
	}
	ctl, err := serveControl(l.dir, log, l.target)
	if err != nil {
		fmt.Fprintf(stderr, "endpoint %s: %v: NICs cannot be added or removed while it runs\n", name, err)
		return
	}
	l.mu.Lock()
	l.ctl = ctl
	l.mu.Unlock()
}

// target is the running VM's NICs, or nil between runs (ErrBusy).
func (l *liveNICs) target() nicChanger {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.vm == nil {
		return nil
	}
	select {
	case <-l.vm.Done():
		return nil
	default:
		return l
	}
}

func (l *liveNICs) current() *VM {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.vm
}

func (l *liveNICs) AddNIC(ctx context.Context, it Interface) (NIC, error) {
	vm := l.current()
	nic, err := vm.AddNIC(ctx, it)
	if err == nil {
		l.remember(vm)
	}
	return nic, err
}

func (l *liveNICs) RemoveNIC(ctx context.Context, name string) error {
	vm := l.current()
	err := vm.RemoveNIC(ctx, name)
	if err == nil {
		l.remember(vm)
	}
	return err
}

func (l *liveNICs) remember(vm *VM) {
	ifs := vm.Interfaces()
	if ifs == nil {
		ifs = []Interface{} // every data NIC removed: still "as changed"
	}
	l.mu.Lock()
	l.ifs = ifs
	l.mu.Unlock()
}

// interfaces are the data interfaces the next run starts with, or nil
// for the configuration's own.
func (l *liveNICs) interfaces() []Interface {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.ifs
}

// close closes the control socket, if open.
func (l *liveNICs) close() {
	l.mu.Lock()
	ctl := l.ctl
	l.ctl = nil
	l.mu.Unlock()
	if ctl != nil {
		ctl.close(l.dir)
	}
}
