package kobj

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// Sockets a checkpoint carries over outside an in-process pair (unix
// ones: unixsock.go). Internet ones: UDP and UDP-Lite sockets (unbound,
// bound, connected, shut down) and TCP sockets that hold no connection
// (unbound, bound, listening). Each is made again with the same family,
// type and protocol, the options of sockOpts that differ from a fresh
// socket's, its address and its peer, its shutdown state and its backlog.
// What the kernel keeps for a connection (TCP sequence numbers and
// queues, a datagram's source address) cannot be given back by socket
// calls: those are refused by name.

// SocketInfo is the state of a socket (a Socket object).
type SocketInfo struct {
	Family, Type, Protocol int
	// Addr is the address it is bound to and Peer the one a datagram
	// socket is connected to, as raw struct sockaddr_in/sockaddr_in6;
	// empty if none.
	Addr, Peer []byte
	// Listening: listen(2) with Backlog.
	Listening bool
	Backlog   int
	Shutdown  uint8 // sock_diag's: 1 receive, 2 send
	Opts      []SockOpt
	// RcvTimeo and SndTimeo are SO_RCVTIMEO and SO_SNDTIMEO, in
	// microseconds (0: none).
	RcvTimeo, SndTimeo int64
	// Device is the interface it is bound to (SO_BINDTODEVICE), "" if
	// none; Linger its SO_LINGER, nil if a fresh socket's (off, 0 s).
	Device string
	Linger *Linger
	// Queued are the datagrams queued to be read at a unix datagram
	// socket, each sent again from its sender at restore: From is the
	// address of the table's socket that sent it, nil for an unbound
	// sender (sent from a socket of the restore's own, or, for an
	// Orphan, from the other end of its pair).
	Queued []Datagram
	// Orphan: an unbound unix datagram socket whose peer is gone, the
	// end of a socket pair whose other end was closed (with datagrams
	// queued here, or not): made as a pair, the other end closed once
	// they are sent again.
	Orphan bool
	// peered: getpeername succeeds (a unix socket connected, its peer
	// perhaps gone). Read at capture, never encoded.
	peered bool
	// unlink: the restore found a socket file at Addr's path (the old
	// socket's, left by its process): unlinked before the bind. Set by
	// AddWithFiles from CreateFiles' look, never decoded.
	unlink bool
}

// Datagram is a datagram queued at a socket.
type Datagram struct {
	From []byte
	Data []byte
}

// Linger is a socket's SO_LINGER.
type Linger struct {
	On      bool
	Seconds int
}

// checkDevice checks an interface name (what dev_valid_name accepts, less
// ":" and whitespace): "" or at most 15 bytes, not "." or "..", no "/".
func checkDevice(name string) error {
	if name == "" {
		return nil
	}
	if len(name) >= unix.IFNAMSIZ || name == "." || name == ".." || strings.ContainsAny(name, "/: \t\n\x00") {
		return fmt.Errorf("interface name %q", name)
	}
	return nil
}

// SockOpt is an integer socket option and its value.
type SockOpt struct {
	Level, Name int
	Value       int
}

// sockOpt is an option a checkpoint reads and a restore may set: the
// values Decode accepts are [0, max]; family and proto, if not 0, are
// the only family and protocol it applies to.
type sockOpt struct {
	level, name   int
	max           int
	family, proto int
}

const maxInt32 = 1<<31 - 1

// sockOpts are the integer options carried over (with SO_RCVTIMEO,
// SO_SNDTIMEO, SO_LINGER and SO_BINDTODEVICE, read apart). Others (the
// congestion control, multicast group memberships, which no getsockopt
// lists, SO_TIMESTAMPING...) are not: a restored socket has the defaults
// there. SO_MARK needs
// CAP_NET_ADMIN to be set again, which a restorer without it reports.
var sockOpts = []sockOpt{
	{unix.SOL_SOCKET, unix.SO_REUSEADDR, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_REUSEPORT, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_BROADCAST, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_KEEPALIVE, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_OOBINLINE, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_DONTROUTE, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_NO_CHECK, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_PASSCRED, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_PASSSEC, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_PRIORITY, 6, 0, 0},
	{unix.SOL_SOCKET, unix.SO_RCVLOWAT, maxInt32, 0, 0},
	{unix.SOL_SOCKET, unix.SO_MARK, maxInt32, 0, 0},
	{unix.SOL_SOCKET, unix.SO_PEEK_OFF, maxInt32, 0, 0},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMP_OLD, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_TIMESTAMPNS_OLD, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_RXQ_OVFL, 1, 0, 0},
	{unix.SOL_SOCKET, unix.SO_SELECT_ERR_QUEUE, 1, 0, 0},
	// Sizes the process set (a fresh socket's are the defaults), set
	// again as half (the kernel doubles what it is given), then the
	// locks as they were (setting a size locks it).
	{unix.SOL_SOCKET, unix.SO_SNDBUF, maxInt32, 0, 0},
	{unix.SOL_SOCKET, unix.SO_RCVBUF, maxInt32, 0, 0},
	{unix.SOL_SOCKET, soBufLock, 3, 0, 0},
	{unix.SOL_IP, unix.IP_FREEBIND, 1, 0, 0},
	{unix.SOL_IP, unix.IP_TOS, 255, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_TTL, 255, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_RECVERR, 1, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_PKTINFO, 1, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_RECVTTL, 1, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_RECVTOS, 1, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_MTU_DISCOVER, 5, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_MULTICAST_TTL, 255, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_MULTICAST_LOOP, 1, unix.AF_INET, 0},
	{unix.SOL_IP, unix.IP_MULTICAST_ALL, 1, unix.AF_INET, 0},
	{unix.SOL_IPV6, unix.IPV6_V6ONLY, 1, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_RECVPKTINFO, 1, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_RECVERR, 1, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_TCLASS, 255, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_UNICAST_HOPS, 255, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_MULTICAST_HOPS, 255, unix.AF_INET6, 0},
	{unix.SOL_IPV6, unix.IPV6_MULTICAST_LOOP, 1, unix.AF_INET6, 0},
	{unix.SOL_TCP, unix.TCP_NODELAY, 1, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_CORK, 1, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_KEEPIDLE, 32767, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_KEEPINTVL, 32767, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_KEEPCNT, 127, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_USER_TIMEOUT, maxInt32, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_SYNCNT, 127, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_MAXSEG, 32767, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_WINDOW_CLAMP, maxInt32, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_NOTSENT_LOWAT, maxInt32, 0, unix.IPPROTO_TCP},
	{unix.SOL_TCP, unix.TCP_FASTOPEN, maxInt32, 0, unix.IPPROTO_TCP},
}

// applies reports whether o is an option of sockets of family and proto.
func (o sockOpt) applies(family, proto int) bool {
	return (o.family == 0 || o.family == family) && (o.proto == 0 || o.proto == proto)
}

// UDPLITE_SEND_CSCOV, UDPLITE_RECV_CSCOV (linux/udp.h) and SO_BUF_LOCK
// (asm-generic/socket.h): not in x/sys.
const (
	soBufLock        = 72
	udpliteSendCscov = 10
	udpliteRecvCscov = 11
)

// MaxSockOpts bounds a socket's options in an image.
const MaxSockOpts = 32

// knownOpt is the entry of sockOpts for (level, name) on sockets of
// family and proto, if any.
func knownOpt(family, proto, level, name int) (sockOpt, bool) {
	i := slices.IndexFunc(sockOpts, func(o sockOpt) bool {
		return o.level == level && o.name == name && o.applies(family, proto)
	})
	if i < 0 {
		return sockOpt{}, false
	}
	return sockOpts[i], true
}

// CaptureSockets reads the sockets the stopped process pid holds at fds
// (socket:[INODE] links the table does not re-create already): one
// Socket object per socket, its descriptors one description (a socket
// cannot be reopened, so each of its descriptors is a dup). One that
// cannot be carried over is a *SharedError naming every such socket.
func CaptureSockets(pid int, fds []procfs.FD) ([]Object, error) {
	if len(fds) == 0 {
		return nil, nil
	}
	pidfd, err := unix.PidfdOpen(pid, 0)
	if err != nil {
		return nil, fmt.Errorf("pidfd: %w", err)
	}
	defer unix.Close(pidfd)
	c := sockCapture{pid: pid, pidfd: pidfd, held: map[uint64]bool{}}
	for _, f := range fds {
		c.held[socketIno(f.Link)] = true
	}
	var objs []Object
	var refused []procfs.Object
	byLink := map[string]int{}
	for _, f := range fds {
		fd := FD{Num: f.Num, CloseOnExec: f.Info.Flags&unix.O_CLOEXEC != 0}
		if i, ok := byLink[f.Link]; ok {
			objs[i].Descs[0].FDs = append(objs[i].Descs[0].FDs, fd)
			continue
		}
		info, why, err := c.read(f)
		if err != nil {
			return nil, err
		}
		if why != "" {
			refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (%s)", f.Num, f.Link), Why: why, FD: f.Num})
			continue
		}
		byLink[f.Link] = len(objs)
		objs = append(objs, Object{Kind: Socket, Sock: info, Descs: []Desc{{Flags: f.Info.Flags & StatusFlags, FDs: []FD{fd}}}})
	}
	// A unix datagram socket connected to another is made after it:
	// those without a peer first (a connected one's peer has none, or
	// is itself, or it is refused here).
	slices.SortStableFunc(objs, func(a, b Object) int { return len(a.Sock.Peer) - len(b.Sock.Peer) })
	refused = append(refused, foreignSenders(objs)...)
	refused = append(refused, crossConnected(objs)...)
	if len(refused) > 0 {
		return nil, &SharedError{Pid: pid, Objects: refused}
	}
	return objs, nil
}

// sockCapture is what CaptureSockets reads of the process pid once for
// all its sockets: held are the inodes of the sockets it holds at the
// descriptors captured; diag and unixDiag are sock_diag's answers, asked
// at the first socket that needs them.
type sockCapture struct {
	pid, pidfd int
	held       map[uint64]bool
	diag       map[uint64]uint8 // inode -> shutdown state
	unixDiag   map[uint64]unixSocket
}

// read reads the state of the socket at the process's descriptor f: why
// says what keeps it from being carried over.
func (c *sockCapture) read(f procfs.FD) (info SocketInfo, why string, err error) {
	s, err := unix.PidfdGetfd(c.pidfd, f.Num, 0)
	if err != nil {
		return info, "", fmt.Errorf("fd %d: pidfd_getfd: %w", f.Num, err)
	}
	info, why, err = readSocket(s)
	unix.Close(s)
	if err != nil {
		return info, "", fmt.Errorf("fd %d (%s): %w", f.Num, f.Link, err)
	}
	if why == "" && info.Family == unix.AF_UNIX {
		if c.unixDiag == nil {
			if c.unixDiag, err = unixSockets(c.pid); err != nil {
				return info, "", err
			}
		}
		why, err = unixState(c.pid, &info, socketIno(f.Link), c.unixDiag, c.held)
		if err != nil {
			return info, "", fmt.Errorf("fd %d (%s): %w", f.Num, f.Link, err)
		}
	} else if why == "" && info.Type == unix.SOCK_DGRAM {
		if c.diag == nil {
			if c.diag, err = inetShutdowns(c.pid); err != nil {
				// udp_diag not loaded, say: without the
				// shutdown state the socket is not carried.
				why = fmt.Sprintf("the shutdown state of a UDP socket cannot be read here (%v)", err)
			}
		}
		info.Shutdown = c.diag[socketIno(f.Link)]
	}
	return info, why, nil
}

// foreignSenders refuses each unix socket of objs with a datagram
// queued from an address no datagram socket of objs is bound to.
func foreignSenders(objs []Object) []procfs.Object {
	var refused []procfs.Object
	for _, o := range objs {
		for _, d := range o.Sock.Queued {
			if d.From != nil && !slices.ContainsFunc(objs, func(p Object) bool {
				return p.Sock.Type == unix.SOCK_DGRAM && string(p.Sock.Addr) == string(d.From)
			}) {
				f := o.Descs[0].FDs[0].Num
				refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (socket)", f), FD: f,
					Why: fmt.Sprintf("a unix socket with datagrams queued from %q, a socket outside the process, is not checkpointed", d.From[2:])})
				break
			}
		}
	}
	return refused
}

// crossConnected refuses each unix socket of objs (in the order they are
// made) whose peer is neither made before it nor itself.
func crossConnected(objs []Object) []procfs.Object {
	var refused []procfs.Object
	for i, o := range objs {
		if o.Sock.Family == unix.AF_UNIX && o.Sock.Peer != nil &&
			!slices.ContainsFunc(objs[:i+1], func(p Object) bool { return string(p.Sock.Addr) == string(o.Sock.Peer) }) {
			f := o.Descs[0].FDs[0].Num
			refused = append(refused, procfs.Object{What: fmt.Sprintf("fd %d (socket)", f), FD: f,
				Why: "unix datagram sockets connected to each other are not checkpointed"})
		}
	}
	return refused
}

// readSocket reads the state of the socket s (a copy of the process's):
// why says what keeps it from being carried over.
func readSocket(s int) (info SocketInfo, why string, err error) {
	if info, err = readSocketKind(s); err != nil {
		return info, "", err
	}
	if info.Family == unix.AF_UNIX {
		return readUnix(s, info)
	}
	if why := inetKindRefused(info); why != "" {
		return info, why, nil
	}
	if why, err := readApartOpts(s, &info); why != "" || err != nil {
		return info, why, err
	}
	if info.Addr, err = sockName(s, unix.Getsockname); err != nil {
		return info, "", fmt.Errorf("getsockname: %w", err)
	}
	if info.Type == unix.SOCK_STREAM {
		why, err = readTCPState(s, &info)
	} else {
		why, err = readUDPState(s, &info)
	}
	if why != "" || err != nil {
		return info, why, err
	}
	if info.Protocol == unix.IPPROTO_UDPLITE {
		for _, name := range []int{udpliteSendCscov, udpliteRecvCscov} {
			if v, err := unix.GetsockoptInt(s, unix.IPPROTO_UDPLITE, name); err == nil && v != 0 {
				return info, "UDP-Lite checksum coverage is not checkpointed", nil
			}
		}
	}
	info.Opts, why, err = changedOpts(s, info)
	return info, why, err
}

// readSocketKind reads s's family, type and protocol.
func readSocketKind(s int) (info SocketInfo, err error) {
	get := func(level, name int) (int, error) { return unix.GetsockoptInt(s, level, name) }
	if info.Family, err = get(unix.SOL_SOCKET, unix.SO_DOMAIN); err != nil {
		return info, fmt.Errorf("SO_DOMAIN: %w", err)
	}
	if info.Type, err = get(unix.SOL_SOCKET, unix.SO_TYPE); err != nil {
		return info, fmt.Errorf("SO_TYPE: %w", err)
	}
	if info.Protocol, err = get(unix.SOL_SOCKET, unix.SO_PROTOCOL); err != nil {
		return info, fmt.Errorf("SO_PROTOCOL: %w", err)
	}
	return info, nil
}

// inetKindRefused says why a socket of info's kind, not a unix one, is
// not carried over: "" for an internet UDP, UDP-Lite or TCP socket.
func inetKindRefused(info SocketInfo) string {
	switch info.Family {
	case unix.AF_INET, unix.AF_INET6:
	case unix.AF_NETLINK:
		return "netlink sockets are not checkpointed"
	case unix.AF_PACKET:
		return "packet sockets are not checkpointed"
	default:
		return fmt.Sprintf("sockets of address family %d are not checkpointed", info.Family)
	}
	switch {
	case info.Type == unix.SOCK_DGRAM && (info.Protocol == unix.IPPROTO_UDP || info.Protocol == unix.IPPROTO_UDPLITE):
	case info.Type == unix.SOCK_STREAM && info.Protocol == unix.IPPROTO_TCP:
	case info.Protocol == unix.IPPROTO_ICMP || info.Protocol == unix.IPPROTO_ICMPV6:
		return "ICMP sockets are not checkpointed"
	case info.Type == unix.SOCK_RAW:
		return "raw sockets are not checkpointed"
	default:
		return fmt.Sprintf("internet sockets of type %d, protocol %d are not checkpointed", info.Type, info.Protocol)
	}
	return ""
}

// readApartOpts reads what of the internet socket s sockOpts leaves out:
// a BPF filter (refused), the interface, the timeouts and SO_LINGER.
func readApartOpts(s int, info *SocketInfo) (why string, err error) {
	if n, err := filterLen(s); err != nil || n != 0 {
		return "a socket with a BPF filter attached is not checkpointed", nil
	}
	if info.Device, err = unix.GetsockoptString(s, unix.SOL_SOCKET, unix.SO_BINDTODEVICE); err != nil {
		return "", fmt.Errorf("SO_BINDTODEVICE: %w", err)
	}
	if checkDevice(info.Device) != nil {
		return fmt.Sprintf("a socket bound to device %q is not checkpointed", info.Device), nil
	}
	if why, err := readTimeouts(s, info); why != "" || err != nil {
		return why, err
	}
	l, err := unix.GetsockoptLinger(s, unix.SOL_SOCKET, unix.SO_LINGER)
	if err != nil {
		return "", fmt.Errorf("SO_LINGER: %w", err)
	}
	if l.Onoff != 0 || l.Linger != 0 {
		if l.Linger < 0 {
			return fmt.Sprintf("a socket lingering %d s is not checkpointed", l.Linger), nil
		}
		info.Linger = &Linger{On: l.Onoff != 0, Seconds: int(l.Linger)}
	}
	return "", nil
}

// readTimeouts reads s's SO_RCVTIMEO and SO_SNDTIMEO into info; one
// above maxTimeo is refused.
func readTimeouts(s int, info *SocketInfo) (why string, err error) {
	if info.RcvTimeo, info.SndTimeo, err = timeouts(s); err != nil {
		return "", err
	}
	if info.RcvTimeo > maxTimeo || info.SndTimeo > maxTimeo {
		return "a socket timeout above a year is not checkpointed", nil
	}
	return "", nil
}

// readTCPState reads the state of the TCP socket s: one that never
// connected, or a listening one with nothing to accept (its backlog).
func readTCPState(s int, info *SocketInfo) (why string, err error) {
	ti, err := unix.GetsockoptTCPInfo(s, unix.SOL_TCP, unix.TCP_INFO)
	if err != nil {
		return "", fmt.Errorf("TCP_INFO: %w", err)
	}
	switch ti.State {
	case 7: // TCP_CLOSE: never connected, or a connection that was closed
		if ti.Segs_out != 0 || ti.Segs_in != 0 {
			return "a closed TCP connection is not checkpointed", nil
		}
	case 10: // TCP_LISTEN; tcp_get_info's unacked and sacked are the accept queue and its bound
		if ti.Unacked != 0 {
			return fmt.Sprintf("a listening TCP socket with %d connections waiting to be accepted is not checkpointed", ti.Unacked), nil
		}
		info.Listening, info.Backlog = true, int(ti.Sacked)
	default:
		return "TCP connections are not checkpointed (they need TCP_REPAIR)", nil
	}
	return "", nil
}

// readUDPState reads the peer of the UDP (UDP-Lite) socket s; one
// corked, or with datagrams or an error queued, is refused.
func readUDPState(s int, info *SocketInfo) (why string, err error) {
	if info.Peer, err = sockName(s, unix.Getpeername); err != nil && err != unix.ENOTCONN {
		return "", fmt.Errorf("getpeername: %w", err)
	}
	if v, err := unix.GetsockoptInt(s, unix.SOL_UDP, unix.UDP_CORK); err == nil && v != 0 {
		return "a corked UDP socket (UDP_CORK) is not checkpointed: the data it holds back cannot be read", nil
	}
	return queued(s), nil
}

// queued says why the datagram socket s cannot be carried over: it has
// datagrams queued, or an error pending; "" if neither. A peek leaves
// the queue as it is. A pending error (an ICMP report) is returned, and
// cleared, by it as by SO_ERROR: the checkpoint refuses the socket then,
// so nothing is lost.
func queued(s int) string {
	var buf [1]byte
	switch _, _, err := unix.Recvfrom(s, buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_TRUNC); err {
	case unix.EAGAIN:
		return ""
	case nil:
		return "a datagram socket with datagrams queued is not checkpointed (their source addresses cannot be given back)"
	default:
		return fmt.Sprintf("a datagram socket with an error pending (%v) is not checkpointed", err)
	}
}

// timeouts are s's SO_RCVTIMEO and SO_SNDTIMEO in microseconds.
func timeouts(s int) (rcv, snd int64, err error) {
	for _, t := range []struct {
		name int
		to   *int64
	}{{unix.SO_RCVTIMEO, &rcv}, {unix.SO_SNDTIMEO, &snd}} {
		tv, err := unix.GetsockoptTimeval(s, unix.SOL_SOCKET, t.name)
		if err != nil {
			return 0, 0, fmt.Errorf("getsockopt(SOL_SOCKET, %d): %w", t.name, err)
		}
		*t.to = tv.Sec*1e6 + tv.Usec
	}
	return rcv, snd, nil
}

// maxTimeo bounds a socket timeout in an image (a year, in µs).
const maxTimeo = 365 * 24 * 3600 * 1e6

// filterLen is the number of instructions of the BPF filter attached to
// s, 0 if none (SO_GET_FILTER with no room asks only that).
func filterLen(s int) (int, error) {
	var n uint32
	_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s), unix.SOL_SOCKET, unix.SO_GET_FILTER, 0, uintptr(unsafe.Pointer(&n)), 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// sockName is getsockname or getpeername of s as a raw sockaddr, nil for
// an unbound (port 0) one.
func sockName(s int, call func(int) (unix.Sockaddr, error)) ([]byte, error) {
	sa, err := call(s)
	if err != nil {
		return nil, err
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		if a.Port == 0 {
			return nil, nil
		}
		return inet4Raw(a), nil
	case *unix.SockaddrInet6:
		if a.Port == 0 {
			return nil, nil
		}
		return inet6Raw(a), nil
	}
	return nil, fmt.Errorf("address of type %T", sa)
}

func inet4Raw(a *unix.SockaddrInet4) []byte {
	b := make([]byte, unix.SizeofSockaddrInet4)
	binary.LittleEndian.PutUint16(b, unix.AF_INET)
	binary.BigEndian.PutUint16(b[2:], uint16(a.Port))
	copy(b[4:], a.Addr[:])
	return b
}

func inet6Raw(a *unix.SockaddrInet6) []byte {
	b := make([]byte, unix.SizeofSockaddrInet6)
	binary.LittleEndian.PutUint16(b, unix.AF_INET6)
	binary.BigEndian.PutUint16(b[2:], uint16(a.Port))
	copy(b[8:], a.Addr[:])
	binary.LittleEndian.PutUint32(b[24:], a.ZoneId)
	return b
}

// changedOpts reads the options of sockOpts from s and keeps those whose
// value differs from a fresh socket's of the same kind (so a restore
// sets only what the process set, and the defaults stay the kernel's).
func changedOpts(s int, info SocketInfo) (opts []SockOpt, why string, err error) {
	fresh, err := unix.Socket(info.Family, info.Type|unix.SOCK_CLOEXEC, info.Protocol)
	if err != nil {
		return nil, "", fmt.Errorf("a fresh socket to compare options with: %w", err)
	}
	defer unix.Close(fresh)
	for _, o := range sockOpts {
		if !o.applies(info.Family, info.Protocol) {
			continue
		}
		def, err := unix.GetsockoptInt(fresh, o.level, o.name)
		if err == unix.EOPNOTSUPP || err == unix.ENOPROTOOPT {
			continue // not an option of this kind of socket on this kernel (SO_PASSCRED of inet sockets since 6.x)
		}
		if err != nil {
			return nil, "", fmt.Errorf("getsockopt(%d, %d) of a fresh socket: %w", o.level, o.name, err)
		}
		v, err := unix.GetsockoptInt(s, o.level, o.name)
		if err != nil {
			return nil, "", fmt.Errorf("getsockopt(%d, %d): %w", o.level, o.name, err)
		}
		if v == def {
			continue
		}
		if v < 0 || v > o.max {
			return nil, fmt.Sprintf("socket option %d/%d = %d is out of the range a restore sets again (0 to %d)", o.level, o.name, v, o.max), nil
		}
		if why := bufferAboveMax(o, v); why != "" {
			return nil, why, nil
		}
		opts = append(opts, SockOpt{Level: o.level, Name: o.name, Value: v})
	}
	return opts, "", nil
}

// bufferAboveMax says why a buffer size v of option o cannot be set again
// without privilege: it is above net.core.wmem_max or rmem_max (set with
// SO_SNDBUFFORCE, SO_RCVBUFFORCE); "" if it can.
func bufferAboveMax(o sockOpt, v int) string {
	sysctl := map[int]string{unix.SO_SNDBUF: "wmem_max", unix.SO_RCVBUF: "rmem_max"}[o.name]
	if o.level != unix.SOL_SOCKET || sysctl == "" {
		return ""
	}
	b, err := os.ReadFile("/proc/sys/net/core/" + sysctl)
	if err != nil {
		return fmt.Sprintf("a socket buffer size the process set is not checkpointed here (net.core.%s: %v)", sysctl, err)
	}
	if lim, err := strconv.Atoi(strings.TrimSpace(string(b))); err != nil || v/2 > lim {
		return fmt.Sprintf("a socket buffer of %d bytes, above net.core.%s (set with SO_SNDBUFFORCE or SO_RCVBUFFORCE), is not checkpointed", v, sysctl)
	}
	return ""
}

// inetShutdowns asks sock_diag, in pid's network namespace, for the
// shutdown state of every UDP and UDP-Lite socket (no socket option
// reads it), by inode.
func inetShutdowns(pid int) (map[uint64]uint8, error) {
	nl, err := diagSocket(pid)
	if err != nil {
		return nil, err
	}
	defer unix.Close(nl)
	out := map[uint64]uint8{}
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		for _, proto := range []uint8{unix.IPPROTO_UDP, unix.IPPROTO_UDPLITE} {
			if err := dumpInet(nl, family, proto, out); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

// inetDiagShutdown is INET_DIAG_SHUTDOWN (linux/inet_diag.h).
const inetDiagShutdown = 8

// dumpInet adds the shutdown state of every socket of family and
// protocol to out.
func dumpInet(nl int, family, proto uint8, out map[uint64]uint8) error {
	le := binary.LittleEndian
	req := make([]byte, 16+56) // nlmsghdr, struct inet_diag_req_v2
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], sockDiagByFamily)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(req[8:], 2)
	req[16], req[17] = family, proto
	le.PutUint32(req[20:], ^uint32(0)) // every state
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sock_diag request: %w", err)
	}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(nl, buf, 0)
		if err != nil {
			return fmt.Errorf("sock_diag reply: %w", err)
		}
		done, err := parseInetDiag(buf[:n], out)
		if err != nil || done {
			return err
		}
	}
}

// parseInetDiag parses one datagram of an inet sock_diag dump into out
// (inode -> shutdown state); it reports whether the dump is done.
func parseInetDiag(b []byte, out map[uint64]uint8) (bool, error) {
	le := binary.LittleEndian
	return walkDiag(b, func(msg []byte) error {
		if len(msg) < 72 { // struct inet_diag_msg
			return errors.New("sock_diag reply malformed")
		}
		ino := uint64(le.Uint32(msg[68:]))
		out[ino] = 0
		return walkAttrs(msg[72:], func(t uint16, v []byte) {
			if t == inetDiagShutdown && len(v) >= 1 {
				out[ino] = v[0]
			}
		})
	})
}

// addSocket appends the calls that make o's socket again and returns
// the descriptor it is on.
func addSocket(b *ptrace.Batch, o Object, nonblock int64) ptrace.Arg {
	s := o.Sock
	fd := addNewSocket(b, s, nonblock)
	addTimeouts(b, fd, s)
	if s.Family == unix.AF_UNIX {
		addUnixState(b, fd, s)
	} else {
		freebind := addInetOpts(b, fd, s)
		addInetState(b, fd, s, freebind)
	}
	return fd
}

// addNewSocket appends the call that makes a socket of s's kind (for an
// Orphan, a pair, its datagrams sent from the other end) and returns its
// descriptor.
func addNewSocket(b *ptrace.Batch, s SocketInfo, nonblock int64) ptrace.Arg {
	if !s.Orphan {
		return b.Add(unix.SYS_SOCKET, ptrace.Lit(int64(s.Family)), ptrace.Lit(int64(s.Type)|unix.SOCK_CLOEXEC|nonblock), ptrace.Lit(int64(s.Protocol))).Result()
	}
	// A pair: what was queued here is sent from the other end,
	// which is closed then, as the process's was.
	p := b.Space(8)
	b.Add(unix.SYS_SOCKETPAIR, ptrace.Lit(unix.AF_UNIX), ptrace.Lit(int64(s.Type)|unix.SOCK_CLOEXEC|nonblock), ptrace.Lit(0), p)
	for _, d := range s.Queued {
		b.Add(unix.SYS_SENDTO, ptrace.Load32(p, 4), b.Bytes(d.Data), ptrace.Lit(int64(len(d.Data))), ptrace.Lit(unix.MSG_DONTWAIT), ptrace.Lit(0), ptrace.Lit(0))
	}
	b.Add(unix.SYS_CLOSE, ptrace.Load32(p, 4))
	return ptrace.Load32(p, 0)
}

// addSetInt appends setsockopt of the integer option level/name to v on
// fd; a buffer size is given as half (the kernel keeps twice what it is
// given).
func addSetInt(b *ptrace.Batch, fd ptrace.Arg, level, name, v int) {
	if level == unix.SOL_SOCKET && (name == unix.SO_SNDBUF || name == unix.SO_RCVBUF) {
		v /= 2
	}
	b.Add(unix.SYS_SETSOCKOPT, fd, ptrace.Lit(int64(level)), ptrace.Lit(int64(name)),
		b.Bytes(binary.LittleEndian.AppendUint32(nil, uint32(v))), ptrace.Lit(4))
}

// addTimeouts appends the setsockopt calls of s's timeouts that are set.
func addTimeouts(b *ptrace.Batch, fd ptrace.Arg, s SocketInfo) {
	for _, t := range []struct {
		name int
		us   int64
	}{{unix.SO_RCVTIMEO, s.RcvTimeo}, {unix.SO_SNDTIMEO, s.SndTimeo}} {
		if t.us != 0 {
			tv := binary.LittleEndian.AppendUint64(nil, uint64(t.us/1e6))
			tv = binary.LittleEndian.AppendUint64(tv, uint64(t.us%1e6))
			b.Add(unix.SYS_SETSOCKOPT, fd, ptrace.Lit(unix.SOL_SOCKET), ptrace.Lit(int64(t.name)), b.Bytes(tv), ptrace.Lit(16))
		}
	}
}

// addUnixState appends the calls that give the unix socket fd s's
// options, name (its old socket file unlinked first), peer and listen.
func addUnixState(b *ptrace.Batch, fd ptrace.Arg, s SocketInfo) {
	for _, opt := range s.Opts {
		addSetInt(b, fd, opt.Level, opt.Name, opt.Value)
	}
	if s.unlink {
		b.Add(unix.SYS_UNLINKAT, ptrace.Lit(unix.AT_FDCWD), b.String(unixPath(s.Addr)), ptrace.Lit(0))
	}
	if len(s.Addr) > 0 {
		b.Add(unix.SYS_BIND, fd, b.Bytes(s.Addr), ptrace.Lit(int64(len(s.Addr))))
	}
	if len(s.Peer) > 0 {
		b.Add(unix.SYS_CONNECT, fd, b.Bytes(s.Peer), ptrace.Lit(int64(len(s.Peer))))
	}
	if s.Listening {
		b.Add(unix.SYS_LISTEN, fd, ptrace.Lit(int64(s.Backlog)))
	}
}

// addInetOpts appends the calls that give the internet socket fd s's
// options, interface and SO_LINGER, all but IP_FREEBIND: its value,
// returned, is set around the bind (addInetState).
func addInetOpts(b *ptrace.Batch, fd ptrace.Arg, s SocketInfo) (freebind int) {
	for _, opt := range s.Opts {
		if opt.Level == unix.SOL_IP && opt.Name == unix.IP_FREEBIND {
			freebind = opt.Value
			continue
		}
		addSetInt(b, fd, opt.Level, opt.Name, opt.Value)
	}
	if s.Device != "" {
		b.Add(unix.SYS_SETSOCKOPT, fd, ptrace.Lit(unix.SOL_SOCKET), ptrace.Lit(unix.SO_BINDTODEVICE), b.String(s.Device), ptrace.Lit(int64(len(s.Device)+1)))
	}
	if s.Linger != nil {
		l := binary.LittleEndian.AppendUint32(nil, uint32(btoi(s.Linger.On)))
		l = binary.LittleEndian.AppendUint32(l, uint32(s.Linger.Seconds))
		b.Add(unix.SYS_SETSOCKOPT, fd, ptrace.Lit(unix.SOL_SOCKET), ptrace.Lit(unix.SO_LINGER), b.Bytes(l), ptrace.Lit(8))
	}
	return freebind
}

// addInetState appends the calls that give the internet socket fd s's
// address (bound with IP_FREEBIND on, then the process's freebind),
// peer, shutdown state and listen.
func addInetState(b *ptrace.Batch, fd ptrace.Arg, s SocketInfo, freebind int) {
	if len(s.Addr) > 0 {
		// The address may be one the process bound with IP_FREEBIND
		// and then turned it off, or one that has left the host: bound
		// with it on, then given the process's setting.
		addSetInt(b, fd, unix.SOL_IP, unix.IP_FREEBIND, 1)
		b.Add(unix.SYS_BIND, fd, b.Bytes(s.Addr), ptrace.Lit(int64(len(s.Addr))))
	}
	if len(s.Addr) > 0 || freebind != 0 {
		addSetInt(b, fd, unix.SOL_IP, unix.IP_FREEBIND, freebind)
	}
	if len(s.Peer) > 0 {
		b.Add(unix.SYS_CONNECT, fd, b.Bytes(s.Peer), ptrace.Lit(int64(len(s.Peer))))
	}
	if s.Shutdown != 0 {
		// SHUT_RD 0, WR 1, RDWR 2 are the state bits less one. An
		// unconnected socket's shutdown sets the state and says
		// ENOTCONN.
		r := b.Add(unix.SYS_SHUTDOWN, fd, ptrace.Lit(int64(s.Shutdown)-1))
		if len(s.Peer) == 0 {
			r.With(ptrace.IgnoreError)
		}
	}
	if s.Listening {
		b.Add(unix.SYS_LISTEN, fd, ptrace.Lit(int64(s.Backlog)))
	}
}

func encodeSocket(b []byte, s SocketInfo) []byte {
	le := binary.LittleEndian
	b = append(b, byte(s.Family), byte(s.Type), byte(s.Protocol), s.Shutdown)
	b = append(b, byte(btoi(s.Listening)), 0)
	b = le.AppendUint16(b, uint16(s.Backlog))
	for _, a := range [][]byte{s.Addr, s.Peer} {
		b = append(b, byte(len(a)))
		b = append(b, a...)
	}
	b = append(b, byte(len(s.Opts)))
	for _, o := range s.Opts {
		b = le.AppendUint32(b, uint32(o.Level))
		b = le.AppendUint32(b, uint32(o.Name))
		b = le.AppendUint32(b, uint32(o.Value))
	}
	b = append(b, byte(len(s.Device)))
	b = append(b, s.Device...)
	if s.Linger == nil {
		b = append(b, 0, 0, 0, 0, 0, 0, 0, 0)
	} else {
		b = append(b, 1, byte(btoi(s.Linger.On)), 0, 0)
		b = le.AppendUint32(b, uint32(s.Linger.Seconds))
	}
	b = le.AppendUint64(b, uint64(s.RcvTimeo))
	b = le.AppendUint64(b, uint64(s.SndTimeo))
	b = append(b, byte(btoi(s.Orphan)), byte(len(s.Queued)))
	for _, d := range s.Queued {
		b = append(b, byte(len(d.From)))
		b = append(b, d.From...)
		b = le.AppendUint32(b, uint32(len(d.Data)))
		b = append(b, d.Data...)
	}
	return b
}

// decodeSocket reads a Socket's state and checks it: an internet UDP,
// UDP-Lite or TCP socket; addresses of its family with a port; a peer
// only for a datagram socket, a backlog only for a listening TCP one
// (which is bound); options of sockOpts, each once, within their range;
// an interface name; a linger time.
// The restorer binds, connects and listens on nothing else.
func decodeSocket(r *reader, l *limits) (SocketInfo, error) {
	s, nopts, err := decodeSocketHead(r)
	if err != nil {
		return s, err
	}
	if err := checkSocketKind(&s, l); err != nil {
		return s, err
	}
	if err := decodeSockOpts(r, &s, nopts); err != nil {
		return s, err
	}
	if err := decodeApartOpts(r, &s); err != nil {
		return s, err
	}
	if err := decodeQueued(r, &s); err != nil {
		return s, err
	}
	if err := checkQueued(&s, l); err != nil {
		return s, err
	}
	return s, nil
}

// decodeSocketHead reads a Socket's kind, shutdown state, listen state,
// addresses and the number of its integer options (read after the kind
// is checked, which they depend on).
func decodeSocketHead(r *reader) (s SocketInfo, nopts int, err error) {
	s.Family, s.Type, s.Protocol = int(r.u8()), int(r.u8()), int(r.u8())
	s.Shutdown = r.u8()
	listening, err := flag(r.u8())
	r.u8()
	s.Backlog = int(r.u16())
	if err != nil {
		return s, 0, err
	}
	s.Listening = listening
	for _, a := range []*[]byte{&s.Addr, &s.Peer} {
		n := int(r.u8())
		if n > 0 {
			*a = append([]byte(nil), r.take(n)...)
		}
	}
	nopts = int(r.u8())
	return s, nopts, r.err
}

// checkSocketKind checks s's family, type and protocol and the states
// and addresses that kind can have (a unix socket's: decodeUnix).
func checkSocketKind(s *SocketInfo, l *limits) error {
	switch s.Family {
	case unix.AF_INET, unix.AF_INET6:
	case unix.AF_UNIX:
		if err := decodeUnix(s, l); err != nil {
			return err
		}
	default:
		return fmt.Errorf("socket family %d", s.Family)
	}
	switch {
	case s.Family == unix.AF_UNIX:
	case s.Type == unix.SOCK_DGRAM && (s.Protocol == unix.IPPROTO_UDP || s.Protocol == unix.IPPROTO_UDPLITE):
		if s.Listening || s.Backlog != 0 {
			return errors.New("a listening datagram socket")
		}
	case s.Type == unix.SOCK_STREAM && s.Protocol == unix.IPPROTO_TCP:
		if s.Peer != nil || s.Shutdown != 0 {
			return errors.New("a connected or shut down TCP socket")
		}
		if s.Listening && s.Addr == nil {
			return errors.New("an unbound listening socket")
		}
		if !s.Listening && s.Backlog != 0 {
			return errors.New("a backlog without listen")
		}
	default:
		return fmt.Errorf("socket type %d, protocol %d", s.Type, s.Protocol)
	}
	if s.Shutdown > 3 {
		return fmt.Errorf("socket shutdown state %d", s.Shutdown)
	}
	if s.Family == unix.AF_UNIX {
		return nil
	}
	for _, a := range [][]byte{s.Addr, s.Peer} {
		if err := checkInetAddr(s.Family, a); err != nil {
			return err
		}
	}
	return nil
}

// decodeSockOpts reads s's n integer options: each of sockOpts for its
// kind (a unix socket's at SOL_SOCKET only), once, within its range.
func decodeSockOpts(r *reader, s *SocketInfo, n int) error {
	if n > MaxSockOpts {
		return fmt.Errorf("%d socket options (at most %d)", n, MaxSockOpts)
	}
	for range n {
		o := SockOpt{Level: int(int32(r.u32())), Name: int(int32(r.u32())), Value: int(int32(r.u32()))}
		if r.err != nil {
			return r.err
		}
		k, ok := knownOpt(s.Family, s.Protocol, o.Level, o.Name)
		if !ok || o.Value < 0 || o.Value > k.max || (s.Family == unix.AF_UNIX && o.Level != unix.SOL_SOCKET) {
			return fmt.Errorf("socket option %d/%d = %d", o.Level, o.Name, o.Value)
		}
		if slices.ContainsFunc(s.Opts, func(p SockOpt) bool { return p.Level == o.Level && p.Name == o.Name }) {
			return fmt.Errorf("socket option %d/%d given twice", o.Level, o.Name)
		}
		s.Opts = append(s.Opts, o)
	}
	return nil
}

// decodeApartOpts reads the options sockOpts leaves out: the interface
// (none for a unix socket), SO_LINGER (absent, or not a fresh socket's)
// and the timeouts (at most maxTimeo).
func decodeApartOpts(r *reader, s *SocketInfo) error {
	s.Device = string(r.take(int(r.u8())))
	set, on := r.u8(), r.u8()
	r.u16()
	secs := int(int32(r.u32()))
	if r.err != nil {
		return r.err
	}
	if err := checkDevice(s.Device); err != nil {
		return err
	}
	if s.Family == unix.AF_UNIX && s.Device != "" {
		return errors.New("a unix socket bound to a device")
	}
	switch {
	case set == 0 && on == 0 && secs == 0:
	case set == 1 && on <= 1 && secs >= 0 && (on == 1 || secs != 0):
		s.Linger = &Linger{On: on == 1, Seconds: secs}
	default:
		return fmt.Errorf("SO_LINGER %d %d %d", set, on, secs)
	}
	s.RcvTimeo, s.SndTimeo = int64(r.u64()), int64(r.u64())
	if s.RcvTimeo < 0 || s.RcvTimeo > maxTimeo || s.SndTimeo < 0 || s.SndTimeo > maxTimeo {
		return fmt.Errorf("socket timeouts %d, %d µs", s.RcvTimeo, s.SndTimeo)
	}
	return nil
}

// decodeQueued reads whether s is an Orphan and the datagrams queued at
// it, within MaxMessages and MaxQueued bytes (their senders are checked
// by checkQueued).
func decodeQueued(r *reader, s *SocketInfo) error {
	orphan, err := flag(r.u8())
	if err != nil {
		return err
	}
	s.Orphan = orphan
	nq, bytes := int(r.u8()), 0
	if nq > MaxMessages {
		return fmt.Errorf("%d datagrams queued (at most %d)", nq, MaxMessages)
	}
	for range nq {
		var d Datagram
		if n := int(r.u8()); n > 0 {
			d.From = append([]byte(nil), r.take(n)...)
		}
		n := int(r.u32())
		if bytes += n; n < 0 || bytes > MaxQueued {
			return fmt.Errorf("more than %d bytes of datagrams queued", MaxQueued)
		}
		d.Data = append([]byte{}, r.take(n)...)
		if r.err != nil {
			return r.err
		}
		s.Queued = append(s.Queued, d)
	}
	return nil
}

// checkInetAddr checks that a is empty or a sockaddr_in (sockaddr_in6)
// of family with a port, its padding zero.
func checkInetAddr(family int, a []byte) error {
	if a == nil {
		return nil
	}
	want := unix.SizeofSockaddrInet4
	if family == unix.AF_INET6 {
		want = unix.SizeofSockaddrInet6
	}
	if len(a) != want || int(binary.LittleEndian.Uint16(a)) != family || binary.BigEndian.Uint16(a[2:]) == 0 {
		return fmt.Errorf("socket address %x of family %d", a, family)
	}
	if family == unix.AF_INET6 {
		if binary.LittleEndian.Uint32(a[4:]) != 0 {
			return errors.New("IPv6 flow label in a socket address")
		}
	} else if binary.LittleEndian.Uint64(a[8:]) != 0 {
		return errors.New("padding in a socket address")
	}
	return nil
}
