package wiring

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"syscall"

	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// batch is a list of rtnetlink requests sent to one namespace's kernel in as
// few sendmsg calls as fit a buffer. The kernel handles the requests in
// order, continues after a failed one and acknowledges each; batching turns
// thousands of round trips into a handful, which is most of why Apply beats
// a script of `ip` commands.
type batch struct {
	msgs [][]byte
	wrap []func(error) error // per request: names what failed
	errs []error             // found while building
}

// add queues req; wrap turns its error (if any) into one that names the
// endpoint or link.
func (b *batch) add(wrap func(error) error, req *nl.NetlinkRequest) {
	b.wrap = append(b.wrap, wrap)
	b.msgs = append(b.msgs, req.Serialize())
}

// fail records an error found while building the batch; run returns it.
func (b *batch) fail(err error) { b.errs = append(b.errs, err) }

func (b *batch) len() int { return len(b.msgs) }

// rtnl is an rtnetlink socket bound to the namespace it was opened in.
type rtnl struct {
	fd  int
	seq uint32
}

// openRTNL opens a route socket in the calling thread's namespace.
func openRTNL() (*rtnl, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netlink bind: %w", err)
	}
	// Small acks (no echo of the request) with the kernel's error text.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_EXT_ACK, 1)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20)
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	return &rtnl{fd: fd}, nil
}

func (r *rtnl) close() {
	if r != nil && r.fd >= 0 {
		unix.Close(r.fd)
		r.fd = -1
	}
}

// maxSend bounds one sendmsg; acks for that many requests fit the receive
// buffer set in openRTNL.
const maxSend = 256 << 10

// run sends every request of b and returns the errors of the failed ones,
// each wrapped as its add said, joined.
func (r *rtnl) run(b *batch) error {
	errs := b.errs
	for start := 0; start < len(b.msgs); {
		end, size := start, 0
		for end < len(b.msgs) && (end == start || size+len(b.msgs[end]) <= maxSend) {
			size += len(b.msgs[end])
			end++
		}
		buf := make([]byte, 0, size)
		first := r.seq + 1
		for i := start; i < end; i++ {
			r.seq++
			m := b.msgs[i]
			binary.NativeEndian.PutUint32(m[8:12], r.seq)
			buf = append(buf, m...)
		}
		if err := unix.Sendto(r.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("netlink send: %w", err)
		}
		failed, err := r.acks(first, end-start)
		if err != nil {
			return err
		}
		for _, f := range failed {
			errs = append(errs, b.wrap[start+int(f.seq-first)](f.err))
		}
		start = end
	}
	return errors.Join(errs...)
}

type nlFailure struct {
	seq uint32
	err error
}

// acks reads n acknowledgements numbered from first.
func (r *rtnl) acks(first uint32, n int) ([]nlFailure, error) {
	var failed []nlFailure
	buf := make([]byte, 64<<10)
	for got := 0; got < n; {
		k, _, err := unix.Recvfrom(r.fd, buf, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:k])
		if err != nil {
			return nil, fmt.Errorf("netlink receive: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || m.Header.Seq < first || m.Header.Seq >= first+uint32(n) {
				continue
			}
			got++
			if len(m.Data) < 4 {
				continue
			}
			code := int32(binary.NativeEndian.Uint32(m.Data[:4]))
			if code == 0 {
				continue
			}
			e := error(unix.Errno(-code))
			if msg := extAckMsg(m); msg != "" {
				e = fmt.Errorf("%w (%s)", e, msg)
			}
			failed = append(failed, nlFailure{seq: m.Header.Seq, err: e})
		}
	}
	return failed, nil
}

// extAckMsg extracts the kernel's error text from an NLMSG_ERROR message
// sent with NETLINK_CAP_ACK (the request header only, then TLVs).
func extAckMsg(m syscall.NetlinkMessage) string {
	const hdr = 4 + unix.SizeofNlMsghdr
	if m.Header.Flags&unix.NLM_F_ACK_TLVS == 0 || len(m.Data) <= hdr {
		return ""
	}
	attrs, err := nl.ParseRouteAttr(m.Data[hdr:])
	if err != nil {
		return ""
	}
	for _, a := range attrs {
		if a.Attr.Type == unix.NLMSGERR_ATTR_MSG {
			return string(trimNul(a.Value))
		}
	}
	return ""
}

func trimNul(b []byte) []byte {
	for len(b) > 0 && b[len(b)-1] == 0 {
		b = b[:len(b)-1]
	}
	return b
}

// Request builders. Each returns a complete request; seq is set by run.

const createFlags = unix.NLM_F_REQUEST | unix.NLM_F_ACK | unix.NLM_F_CREATE | unix.NLM_F_EXCL

// linkSpec is one side of a link to create.
type linkSpec struct {
	name   string
	index  int // 0: the kernel picks
	mtu    int
	netns  int // fd of the namespace to create it in; -1: the socket's
	master int // index of a bridge in the same namespace; 0: none
}

func ifinfo(index int, up bool) *nl.IfInfomsg {
	m := nl.NewIfInfomsg(unix.AF_UNSPEC)
	m.Index = int32(index)
	if up {
		m.Flags, m.Change = unix.IFF_UP, unix.IFF_UP
	}
	return m
}

func addLinkAttrs(add func(*nl.RtAttr), s linkSpec) {
	add(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.name)))
	if s.mtu > 0 {
		add(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.mtu))))
	}
	if s.netns >= 0 {
		add(nl.NewRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.netns))))
	}
	// One queue each way, asked for up front: a veth otherwise gets one per
	// CPU and is cut down to one after registration, which waits for an RCU
	// grace period per device.
	add(nl.NewRtAttr(unix.IFLA_NUM_TX_QUEUES, nl.Uint32Attr(1)))
	add(nl.NewRtAttr(unix.IFLA_NUM_RX_QUEUES, nl.Uint32Attr(1)))
	if s.master > 0 {
		add(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.master))))
	}
}

// newVethReq creates a veth pair, the first end up. The peer stays down: the
// kernel opens it before the pair is joined and fails with ENOTCONN. The
// kernel honours the peer's index only when the first end's is given too,
// and sets a master only on the first end.
func newVethReq(a, b linkSpec) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, createFlags)
	req.AddData(ifinfo(a.index, true))
	addLinkAttrs(func(r *nl.RtAttr) { req.AddData(r) }, a)
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	data := info.AddRtAttr(nl.IFLA_INFO_DATA, nil)
	peer := data.AddRtAttr(nl.VETH_INFO_PEER, nil)
	pm := nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	pm.Index = int32(b.index)
	b.master = 0
	if a.index == 0 {
		b.index = 0
	}
	addLinkAttrs(func(r *nl.RtAttr) { peer.AddChild(r) }, b)
	req.AddData(info)
	return req
}

// setLinkReq brings an existing link (by index) up, optionally setting its
// MTU.
func setLinkReq(index, mtu int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWLINK, unix.NLM_F_REQUEST|unix.NLM_F_ACK)
	req.AddData(ifinfo(index, true))
	if mtu > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(mtu))))
	}
	return req
}

// addrReq adds (or replaces) an IPv4 address on a link.
func addrReq(index int, p netip.Prefix) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWADDR, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	m := nl.NewIfAddrmsg(unix.AF_INET)
	m.Index = uint32(index)
	m.Prefixlen = uint8(p.Bits())
	req.AddData(m)
	a := p.Addr().As4()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, a[:]))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, a[:]))
	if p.Bits() < 31 {
		bc := lastAddr(p).As4()
		req.AddData(nl.NewRtAttr(unix.IFA_BROADCAST, bc[:]))
	}
	return req
}

// defaultRouteReq adds (or replaces) an IPv4 default route via gw.
func defaultRouteReq(index int, gw netip.Addr) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(unix.RTM_NEWROUTE, unix.NLM_F_REQUEST|unix.NLM_F_ACK|unix.NLM_F_CREATE|unix.NLM_F_REPLACE)
	m := nl.NewRtMsg() // main table, boot protocol, universe scope, unicast
	m.Family = unix.AF_INET
	req.AddData(m)
	g := gw.As4()
	req.AddData(nl.NewRtAttr(unix.RTA_GATEWAY, g[:]))
	req.AddData(nl.NewRtAttr(unix.RTA_OIF, nl.Uint32Attr(uint32(index))))
	return req
}
