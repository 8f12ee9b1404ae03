package kobj

import (
	"fmt"
	"strings"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// Kind is the kind of an Object.
type Kind uint8

const (
	Eventfd Kind = iota + 1
	Timerfd
	Signalfd
	Epoll
	Pipe
	SocketPair // a connected pair of unix sockets, both ends in the process
	// File is a file without a name (a memfd, a deleted regular file)
	// with its contents: only a checkpoint captures these (CaptureFiles).
	File
	// Fifo is a named pipe, reopened by its path, with the bytes queued
	// in it: only a checkpoint captures these (CaptureFIFOs).
	Fifo
	// Socket is a socket outside an in-process pair: an internet one
	// that holds no connection (UDP, UDP-Lite, a TCP listener or a TCP
	// socket never connected) or a unix one unbound, bound, listening or
	// connected to one of the process's own: only a checkpoint captures
	// these (CaptureSockets).
	Socket
)

var kindNames = map[Kind]string{Eventfd: "eventfd", Timerfd: "timerfd", Signalfd: "signalfd", Epoll: "epoll", Pipe: "pipe", SocketPair: "socket pair", File: "file", Fifo: "FIFO", Socket: "socket"}

func (k Kind) String() string {
	if n, ok := kindNames[k]; ok {
		return n
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Table is what Capture found in a process: the objects each copy must
// get its own of, and its shared anonymous memory.
type Table struct {
	Objects []Object
	Memory  []Memory
	// Scratch is the start of a free range of the process's address space
	// at least as large as the largest Memory: where AddTo builds each
	// copy before it moves it into place. 0 when Memory is empty.
	Scratch uint64
}

// Object is one kernel object and its state. Which fields apply depends
// on Kind.
type Object struct {
	Kind Kind
	// Descs are its open file descriptions: one for an anon-inode
	// object, one per end for a pipe (End 0 reads, 1 writes) or a socket
	// pair.
	Descs []Desc

	Eventfd procfs.EventfdInfo // Eventfd
	Timer   procfs.TimerInfo   // Timerfd
	SigMask uint64             // Signalfd: bit n-1 blocks signal n
	Watches []Watch            // Epoll: its registrations
	// Pipe, Fifo: its capacity (F_GETPIPE_SZ) and the bytes it held.
	PipeSize int
	Data     []byte
	// SocketPair: its type (SOCK_STREAM, SOCK_DGRAM, SOCK_SEQPACKET) and
	// the messages queued to be read at each end (a stream's bytes as
	// one message).
	SockType int
	Queued   [2][][]byte
	// Shutdown is each end's shutdown state (sock_diag: 1 receive, 2
	// send); a stream or seqpacket pair's are mirrors of each other.
	Shutdown [2]uint8
	// File: the file and its contents; its descriptions keep their
	// access mode and offset (Desc.Flags within FileFlags, Desc.Pos).
	File FileInfo
	// Fifo: its path; its descriptions keep their access mode
	// (Desc.Flags within O_ACCMODE|StatusFlags).
	Path string
	// Socket: its family, type, addresses, options...
	Sock SocketInfo
}

// Desc is an open file description and the descriptors that refer to it.
type Desc struct {
	End   int    // a pipe's end: 0 read, 1 write
	Flags uint32 // status flags to give it (StatusFlags of the fdinfo flags; FileFlags for a File)
	Pos   int64  // a File description's offset
	FDs   []FD
}

// FD is a descriptor number and its close-on-exec flag.
type FD struct {
	Num         int
	CloseOnExec bool
}

// Watch is one registration of an epoll instance.
type Watch struct {
	FD     int
	Events uint32
	Data   uint64
}

// Memory is a shared anonymous mapping, [Start, End), with its mmap
// protection.
type Memory struct {
	Start, End uint64
	Prot       int
}

// StatusFlags are the file status flags a re-created description is given
// (F_SETFL): the others are fixed at creation or ignored by these objects.
const StatusFlags = 0o4000 | 0o40000 // O_NONBLOCK | O_DIRECT

// Limits on what a Table holds: a copy replays all of it in one batch.
const (
	MaxObjects = 1024
	MaxFDs     = 4096
	MaxWatches = 4096
	MaxData    = 256 << 10 // bytes in all pipes together
	MaxMemory  = 256 << 20 // bytes of shared anonymous memory in all
	// A socket pair end's queue is re-sent without blocking, so it must
	// fit in a fresh socket's buffers.
	MaxQueued   = 64 << 10 // bytes queued at one end
	MaxMessages = 64       // datagrams queued at one end
)

// Len is the number of descriptors the table re-creates.
func (t *Table) Len() int {
	n := 0
	for _, o := range t.Objects {
		for _, d := range o.Descs {
			n += len(d.FDs)
		}
	}
	return n
}

// FDs lists the descriptor numbers the table re-creates.
func (t *Table) FDs() []int {
	var out []int
	for _, o := range t.Objects {
		for _, d := range o.Descs {
			for _, f := range d.FDs {
				out = append(out, f.Num)
			}
		}
	}
	return out
}

// Summary is a one-line account of the table ("2 eventfd, 1 epoll (3
// watches), 1 pipe (12 bytes), shared memory 8 KiB").
func (t *Table) Summary() string {
	count := map[Kind]int{}
	watches, data, queued := 0, 0, 0
	for _, o := range t.Objects {
		count[o.Kind]++
		watches += len(o.Watches)
		data += len(o.Data)
		for _, q := range o.Queued {
			for _, m := range q {
				queued += len(m)
			}
		}
	}
	var parts []string
	for k := Eventfd; k <= Socket; k++ {
		if count[k] == 0 {
			continue
		}
		s := fmt.Sprintf("%d %s", count[k], k)
		switch {
		case k == Epoll:
			s += fmt.Sprintf(" (%d watches)", watches)
		case (k == Pipe || k == Fifo) && data > 0:
			s += fmt.Sprintf(" (%d bytes)", data)
		case k == SocketPair:
			s = fmt.Sprintf("%d socket pair", count[k])
			if queued > 0 {
				s += fmt.Sprintf(" (%d bytes queued)", queued)
			}
		}
		parts = append(parts, s)
	}
	if len(t.Memory) > 0 {
		var n uint64
		for _, m := range t.Memory {
			n += m.End - m.Start
		}
		parts = append(parts, fmt.Sprintf("shared memory %d KiB", n>>10))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}

// SharedError is Capture's refusal: objects a copy would share with the
// process and its other copies, which no copy can be given its own of.
type SharedError struct {
	Pid     int
	Objects []procfs.Object
}

func (e *SharedError) Error() string {
	names := make([]string, len(e.Objects))
	for i, o := range e.Objects {
		names[i] = o.String()
	}
	return fmt.Sprintf("process %d holds objects its copies would share (%s)", e.Pid, strings.Join(names, "; "))
}

// Is matches errdefs.ErrNotSupported.
func (e *SharedError) Is(target error) bool { return target == errdefs.ErrNotSupported }
