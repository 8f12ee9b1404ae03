package kobj

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/ptrace"
)

// Unix sockets outside a pair a checkpoint carries over: unbound ones,
// ones bound to an absolute path or an abstract name, listening ones
// with no connection waiting, and datagram sockets connected to a bound
// one the process holds too. A path's socket file is the one the socket
// made (sock_diag's inode); at restore a socket file still at the path
// (the dead process's) is unlinked before the bind, and nothing else is.

// readUnix is readSocket for a unix socket: what its copy s tells (the
// rest is sock_diag's: unixState).
func readUnix(s int, info SocketInfo) (SocketInfo, string, error) {
	switch info.Type {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return info, fmt.Sprintf("unix sockets of type %d are not checkpointed", info.Type), nil
	}
	if n, err := filterLen(s); err != nil || n != 0 {
		return info, "a socket with a BPF filter attached is not checkpointed", nil
	}
	_, err := unix.Getpeername(s)
	info.peered = err == nil
	if info.Type == unix.SOCK_DGRAM { // a seqpacket one with a queue is connected: refused by unixState
		q, why, err := peekDatagrams(s)
		if why != "" || err != nil {
			return info, why, err
		}
		info.Queued = q
	}
	if why, err := readTimeouts(s, &info); why != "" || err != nil {
		return info, why, err
	}
	var why string
	info.Opts, why, err = changedOpts(s, info)
	return info, why, err
}

// unixState fills in what sock_diag says of the unix socket ino: its
// name, its peer, whether it listens. held are the inodes of the
// process's sockets.
func unixState(pid int, info *SocketInfo, ino uint64, diag map[uint64]unixSocket, held map[uint64]bool) (string, error) {
	us, ok := diag[ino]
	if !ok {
		return "", errors.New("not in the sock_diag dump of its network namespace")
	}
	if us.Shutdown != 0 {
		return "a shut down unix socket outside a pair is not checkpointed", nil
	}
	peer, live := diag[us.Peer]
	switch {
	case (us.Peer != 0 || info.peered) && info.Type != unix.SOCK_DGRAM:
		return "a connected unix socket whose peer is not the other end of a pair the process holds (an accepted connection, or one to a socket outside) is not checkpointed", nil
	case us.Peer != 0 && live:
		if !held[us.Peer] || !peer.Named {
			return "a unix datagram socket connected to a socket outside the process is not checkpointed", nil
		}
		info.Peer = unixRaw(peer.Name)
	case us.Peer != 0:
		return "a unix datagram socket connected to a socket sock_diag does not show (in another network namespace) is not checkpointed", nil
	case info.peered && !us.Named:
		// Connected (getpeername says so) to a socket that is gone
		// (sock_diag shows a dead peer as 0): the end of a pair whose
		// other end was closed.
		info.Orphan = true
	case info.peered:
		return "a bound unix datagram socket connected to a socket that is gone is not checkpointed", nil
	case !us.Named && len(info.Queued) > 0:
		return "an unbound, unconnected unix socket with datagrams queued is not checkpointed", nil
	}
	if us.Named {
		if len(us.Name) > 0 && us.Name[0] != 0 {
			path := string(bytes.TrimRight(us.Name, "\x00"))
			if why, err := sameSocketFile(pid, path, us.FileIno); why != "" || err != nil {
				return why, err
			}
		}
		info.Addr = unixRaw(us.Name)
		if err := checkUnixAddr(info.Addr); err != nil {
			return fmt.Sprintf("a unix socket bound to %q is not checkpointed", us.Name), nil
		}
	}
	if us.State == 10 { // TCP_LISTEN
		if us.Queue != 0 {
			return fmt.Sprintf("a listening unix socket with %d connections waiting to be accepted is not checkpointed", us.Queue), nil
		}
		if !us.Named {
			return "a listening unix socket without a name is not checkpointed", nil
		}
		info.Listening, info.Backlog = true, int(min(us.Backlog, 65535))
	}
	return "", nil
}

// sameSocketFile says why path, in pid's root (a relative one: from its
// cwd, where the restore binds it again), is not the socket file ino
// (removed, replaced, or bound from another directory): "" if it is.
func sameSocketFile(pid int, path string, ino uint64) (string, error) {
	var st unix.Stat_t
	ok, err := socketFileOf(pid, path, &st)
	if err != nil {
		return "", err
	}
	if !ok || st.Ino != ino {
		return fmt.Sprintf("a unix socket whose file %s was removed or replaced (or, a relative path, is not under its cwd now) is not checkpointed", path), nil
	}
	return "", nil
}

// socketFileOf reports whether path is a socket file (st: its stat) for
// process pid: an absolute path resolved in its root, a relative one
// beneath its cwd; false without error if nothing is there.
func socketFileOf(pid int, path string, st *unix.Stat_t) (bool, error) {
	base, resolve := "root", uint64(unix.RESOLVE_IN_ROOT)
	if !strings.HasPrefix(path, "/") {
		base, resolve = "cwd", unix.RESOLVE_BENEATH
	}
	dir, err := unix.Open(fmt.Sprintf("/proc/%d/%s", pid, base), unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, fmt.Errorf("open the process's %s: %w", base, err)
	}
	defer unix.Close(dir)
	fd, err := unix.Openat2(dir, path, &unix.OpenHow{Flags: unix.O_PATH | unix.O_NOFOLLOW | unix.O_CLOEXEC, Resolve: resolve | unix.RESOLVE_NO_MAGICLINKS})
	if err == unix.ENOENT {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("open %s: %w", path, err)
	}
	defer unix.Close(fd)
	if err := unix.Fstat(fd, st); err != nil {
		return false, fmt.Errorf("stat %s: %w", path, err)
	}
	return st.Mode&unix.S_IFMT == unix.S_IFSOCK, nil
}

// unixRaw is a raw sockaddr_un of sun_path bytes name.
func unixRaw(name []byte) []byte {
	return append(binary.LittleEndian.AppendUint16(nil, unix.AF_UNIX), name...)
}

// unixPath is the path a raw sockaddr_un names, "" for an abstract one.
func unixPath(a []byte) string {
	if len(a) < 3 || a[2] == 0 {
		return ""
	}
	return string(a[2 : len(a)-1])
}

// checkUnixAddr checks a raw sockaddr_un: an abstract name (a NUL, then
// 1 to 107 bytes), or a path without "." or ".." components, not under
// /proc, ended by its only NUL (a relative one is bound from the
// restored cwd, as it was).
func checkUnixAddr(a []byte) error {
	if len(a) < 3 || len(a) > 2+108 || int(binary.LittleEndian.Uint16(a)) != unix.AF_UNIX {
		return fmt.Errorf("unix socket address %q", a)
	}
	if a[2] == 0 {
		if len(a) < 4 {
			return errors.New("an empty abstract unix socket name")
		}
		return nil
	}
	p := unixPath(a)
	if a[len(a)-1] != 0 || strings.IndexByte(p, 0) >= 0 || strings.HasSuffix(p, "/") || strings.Contains(p, "//") ||
		strings.Contains("/"+p+"/", "/../") || strings.Contains("/"+p+"/", "/./") || strings.HasPrefix(p+"/", "/proc/") {
		return fmt.Errorf("unix socket path %q", p)
	}
	return nil
}

// decodeUnix checks a unix socket's state: a stream, datagram or
// seqpacket socket of protocol 0, not shut down, bound to a valid
// address no other socket of the table has; a peer only for a datagram
// socket, and only the address of one bound before it in the table or
// its own; a
// listening one bound. (decodeSocket refuses a device.)
func decodeUnix(s *SocketInfo, l *limits) error {
	switch s.Type {
	case unix.SOCK_STREAM, unix.SOCK_DGRAM, unix.SOCK_SEQPACKET:
	default:
		return fmt.Errorf("unix socket type %d", s.Type)
	}
	if s.Protocol != 0 || s.Shutdown != 0 {
		return errors.New("a unix socket with a protocol or a shutdown state")
	}
	if s.Listening && (s.Type == unix.SOCK_DGRAM || s.Addr == nil) {
		return errors.New("a listening unix socket that is a datagram one or unbound")
	}
	if !s.Listening && s.Backlog != 0 {
		return errors.New("a backlog without listen")
	}
	if s.Addr != nil {
		if err := checkUnixAddr(s.Addr); err != nil {
			return err
		}
		if _, dup := l.unixNames[string(s.Addr)]; dup {
			return fmt.Errorf("unix socket address %q bound twice", s.Addr)
		}
		if l.unixNames == nil {
			l.unixNames = map[string]bool{}
		}
		l.unixNames[string(s.Addr)] = s.Type == unix.SOCK_DGRAM
	}
	if s.Peer != nil && (s.Type != unix.SOCK_DGRAM || !l.unixNames[string(s.Peer)]) {
		return errors.New("a unix socket connected to no datagram socket bound before it (or itself)")
	}
	return nil
}

// staleSockets looks at the path of each unix socket of t bound to one,
// for the stopped process pid (the copy: in its root, a relative path
// from its cwd, which the plan gave it): a socket file there is marked
// staleSocket. Anything else there is left alone, and the bind fails on
// it (EADDRINUSE).
func (t *Table) staleSockets(pid int) (Files, error) {
	var out Files
	for i, o := range t.Objects {
		p := unixPath(o.Sock.Addr)
		if o.Kind != Socket || o.Sock.Family != unix.AF_UNIX || p == "" {
			continue
		}
		var st unix.Stat_t
		ok, err := socketFileOf(pid, p, &st)
		if err != nil {
			return nil, fmt.Errorf("unix socket path: %w", err)
		}
		if ok {
			if out == nil {
				out = Files{}
			}
			out[i] = staleSocket
		}
	}
	return out, nil
}

// peekDatagrams reads the datagrams queued at the unix datagram socket s
// (a copy of the process's), with their senders' addresses, leaving them
// queued: peeks from a peek offset that each peek advances, then the
// socket's own offset is given back. why is set for a queue that cannot
// be sent again (descriptors or credentials in flight, too much).
func peekDatagrams(s int) (q []Datagram, why string, err error) {
	off, err := unix.GetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF)
	if err != nil {
		return nil, "", fmt.Errorf("SO_PEEK_OFF: %w", err)
	}
	if err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, 0); err != nil {
		return nil, "", fmt.Errorf("SO_PEEK_OFF: %w", err)
	}
	defer unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_PEEK_OFF, off)
	buf := make([]byte, MaxQueued+1)
	oob := make([]byte, unix.CmsgSpace(64*4))
	total := 0
	for {
		n, oobn, _, from, err := unix.Recvmsg(s, buf, oob, unix.MSG_PEEK|unix.MSG_DONTWAIT|unix.MSG_CMSG_CLOEXEC)
		if err == unix.EAGAIN {
			return q, "", nil
		}
		if err != nil {
			return nil, fmt.Sprintf("a unix datagram socket with an error pending (%v) is not checkpointed", err), nil
		}
		if oobn > 0 {
			closeRights(oob[:oobn])
			return nil, "a unix datagram socket with descriptors or credentials in flight is not checkpointed", nil
		}
		if total += n; total > MaxQueued || len(q) >= MaxMessages {
			return nil, fmt.Sprintf("a unix datagram socket with more than %d bytes or %d datagrams queued is not checkpointed", MaxQueued, MaxMessages), nil
		}
		d := Datagram{Data: append([]byte{}, buf[:n]...)}
		if a, ok := from.(*unix.SockaddrUnix); ok && a.Name != "" {
			if a.Name[0] == '@' {
				d.From = unixRaw(append([]byte{0}, a.Name[1:]...))
			} else {
				d.From = unixRaw(append([]byte(a.Name), 0))
			}
		}
		q = append(q, d)
	}
}

// closeRights closes the descriptors a peek installed in us.
func closeRights(oob []byte) {
	cms, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, cm := range cms {
		if fds, err := unix.ParseUnixRights(&cm); err == nil {
			for _, f := range fds {
				unix.Close(f)
			}
		}
	}
}

// checkQueued checks a socket's queued datagrams: only at a unix datagram
// socket; at an Orphan (unbound, unconnected) only from unbound senders;
// at another, which must be bound to be sent to, from its peer if it has
// one, else from unbound senders or the table's bound datagram sockets
// (checked once the table is read: l.senders).
func checkQueued(s *SocketInfo, l *limits) error {
	if (len(s.Queued) > 0 || s.Orphan) && (s.Family != unix.AF_UNIX || s.Type != unix.SOCK_DGRAM) {
		return errors.New("datagrams queued at, or an orphan, socket other than a unix datagram one")
	}
	if s.Orphan && (s.Addr != nil || s.Peer != nil) {
		return errors.New("an orphan socket bound or connected")
	}
	if len(s.Queued) == 0 {
		return nil
	}
	if !s.Orphan && s.Addr == nil {
		return errors.New("datagrams queued at an unbound socket")
	}
	for _, d := range s.Queued {
		if d.From == nil {
			if s.Peer != nil {
				return errors.New("a datagram from an unbound sender at a connected socket")
			}
			continue
		}
		if s.Orphan || (s.Peer != nil && string(d.From) != string(s.Peer)) {
			return errors.New("a datagram from a socket that could not have sent it")
		}
		if err := checkUnixAddr(d.From); err != nil {
			return err
		}
		l.senders = append(l.senders, d.From)
	}
	return nil
}

// addQueued sends again the datagrams queued at each bound unix socket
// of t, once every object is on its numbers: each from its sender's
// descriptor, or from a socket of the batch's own for an unbound sender.
func (t *Table) addQueued(b *ptrace.Batch) {
	senders := map[string]int{} // address -> descriptor number
	for _, o := range t.Objects {
		if o.Kind == Socket && o.Sock.Family == unix.AF_UNIX && o.Sock.Addr != nil {
			senders[string(o.Sock.Addr)] = o.Descs[0].FDs[0].Num
		}
	}
	for _, o := range t.Objects {
		s := o.Sock
		if o.Kind != Socket || s.Orphan || len(s.Queued) == 0 {
			continue
		}
		to := b.Bytes(s.Addr)
		var own ptrace.Arg
		for _, d := range s.Queued {
			var from ptrace.Arg
			if d.From == nil {
				if own == (ptrace.Arg{}) {
					own = b.Add(unix.SYS_SOCKET, ptrace.Lit(unix.AF_UNIX), ptrace.Lit(unix.SOCK_DGRAM|unix.SOCK_CLOEXEC), ptrace.Lit(0)).Result()
				}
				from = own
			} else {
				from = ptrace.Lit(int64(senders[string(d.From)]))
			}
			b.Add(unix.SYS_SENDTO, from, b.Bytes(d.Data), ptrace.Lit(int64(len(d.Data))), ptrace.Lit(unix.MSG_DONTWAIT), to, ptrace.Lit(int64(len(s.Addr))))
		}
		if own != (ptrace.Arg{}) {
			b.Add(unix.SYS_CLOSE, own)
		}
	}
}
