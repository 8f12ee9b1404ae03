package kobj

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/procfs"
)

// The unix socket part of the sock_diag netlink interface
// (linux/unix_diag.h; not in x/sys).
const (
	sockDiagByFamily = 20
	udiagShowName    = 0x01
	udiagShowVFS     = 0x02
	udiagShowPeer    = 0x04
	udiagShowRQLen   = 0x10
	unixDiagName     = 0
	unixDiagVFS      = 1
	unixDiagPeer     = 2
	unixDiagRQLen    = 4
	unixDiagShutdown = 6
)

// unixSocket is what sock_diag says of one unix socket.
type unixSocket struct {
	Type     int
	State    uint8  // TCP_LISTEN (10) for a listening one
	Peer     uint64 // inode of the socket it is connected to, 0 if none
	Named    bool   // bound to a path or an abstract name
	Name     []byte // its sun_path bytes (a path's with its NUL, an abstract name's from its leading NUL)
	FileIno  uint64 // the inode of the file a path names, 0 if none
	Shutdown uint8
	// Queue is, for a listening socket, the connections waiting to be
	// accepted and Backlog its bound; for others, the bytes queued.
	Queue, Backlog uint32
}

// unixSockets lists the unix sockets of pid's network namespace by inode.
// The netlink socket that asks must live in that namespace: it is made on
// a thread of its own that enters the namespace and leaves it again.
func unixSockets(pid int) (map[uint64]unixSocket, error) {
	nl, err := diagSocket(pid)
	if err != nil {
		return nil, err
	}
	defer unix.Close(nl)
	return dumpUnix(nl)
}

// diagSocket is a NETLINK_SOCK_DIAG socket in pid's network namespace.
func diagSocket(pid int) (int, error) {
	ns, err := procfs.OpenNamespace(pid, "net")
	if err != nil {
		return -1, err
	}
	defer ns.Close()
	nl, err := socketIn(ns)
	if err != nil {
		return -1, fmt.Errorf("sock_diag: %w", err)
	}
	return nl, nil
}

// socketIn makes a NETLINK_SOCK_DIAG socket in the network namespace ns.
func socketIn(ns *os.File) (int, error) {
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		own, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, err}
			return
		}
		defer own.Close()
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("enter the network namespace: %w", err)}
			return
		}
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
		if unix.Setns(int(own.Fd()), unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		} // else the thread stays locked and exits with this goroutine
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

// dumpUnix asks nl for every unix socket, with its peer, name and
// shutdown state.
func dumpUnix(nl int) (map[uint64]unixSocket, error) {
	le := binary.LittleEndian
	req := make([]byte, 16+24)
	le.PutUint32(req[0:], uint32(len(req)))
	le.PutUint16(req[4:], sockDiagByFamily)
	le.PutUint16(req[6:], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	le.PutUint32(req[8:], 1)
	req[16] = unix.AF_UNIX
	le.PutUint32(req[20:], ^uint32(0)) // every state
	le.PutUint32(req[28:], udiagShowName|udiagShowVFS|udiagShowPeer|udiagShowRQLen)
	if err := unix.Sendto(nl, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sock_diag request: %w", err)
	}
	out := map[uint64]unixSocket{}
	buf := make([]byte, 1<<16)
	for {
		n, _, err := unix.Recvfrom(nl, buf, 0)
		if err != nil {
			return nil, fmt.Errorf("sock_diag reply: %w", err)
		}
		done, err := parseUnixDiag(buf[:n], out)
		if err != nil || done {
			return out, err
		}
	}
}

// parseUnixDiag parses one datagram of a unix sock_diag dump into out; it
// reports whether the dump is done (NLMSG_DONE).
func parseUnixDiag(b []byte, out map[uint64]unixSocket) (bool, error) {
	le := binary.LittleEndian
	return walkDiag(b, func(msg []byte) error {
		if len(msg) < 16 { // struct unix_diag_msg
			return errMalformed
		}
		s := unixSocket{Type: int(msg[1]), State: msg[2]}
		ino := uint64(le.Uint32(msg[4:]))
		err := walkAttrs(msg[16:], func(t uint16, v []byte) {
			switch t {
			case unixDiagName:
				s.Named = true
				s.Name = append([]byte(nil), v...)
			case unixDiagVFS:
				if len(v) >= 8 {
					s.FileIno = uint64(le.Uint32(v))
				}
			case unixDiagRQLen:
				if len(v) >= 8 {
					s.Queue, s.Backlog = le.Uint32(v), le.Uint32(v[4:])
				}
			case unixDiagPeer:
				if len(v) >= 4 {
					s.Peer = uint64(le.Uint32(v))
				}
			case unixDiagShutdown:
				if len(v) >= 1 {
					s.Shutdown = v[0]
				}
			}
		})
		out[ino] = s
		return err
	})
}

var errMalformed = errors.New("sock_diag reply malformed")

// walkDiag calls each with the payload of every sock_diag message in one
// datagram of a dump; it reports whether the dump is done (NLMSG_DONE).
func walkDiag(b []byte, each func(msg []byte) error) (bool, error) {
	le := binary.LittleEndian
	for len(b) > 0 {
		if len(b) < 16 {
			return false, errMalformed
		}
		n, typ := int(le.Uint32(b)), le.Uint16(b[4:])
		if n < 16 || n > len(b) {
			return false, errMalformed
		}
		msg := b[16:n]
		b = b[min(len(b), (n+3)&^3):]
		switch typ {
		case unix.NLMSG_DONE:
			return true, nil
		case unix.NLMSG_ERROR:
			if len(msg) >= 4 {
				if e := int32(le.Uint32(msg)); e != 0 {
					return false, fmt.Errorf("sock_diag: %w", unix.Errno(-e))
				}
			}
		case sockDiagByFamily:
			if err := each(msg); err != nil {
				return false, err
			}
		}
	}
	return false, nil
}

// walkAttrs calls each with the type and value of every netlink
// attribute in b.
func walkAttrs(b []byte, each func(t uint16, v []byte)) error {
	le := binary.LittleEndian
	for len(b) >= 4 {
		l, t := int(le.Uint16(b)), le.Uint16(b[2:])
		if l < 4 || l > len(b) {
			return errMalformed
		}
		each(t, b[4:l])
		b = b[min(len(b), (l+3)&^3):]
	}
	return nil
}
