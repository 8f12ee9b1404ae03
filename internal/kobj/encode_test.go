package kobj

import (
	"errors"
	"reflect"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/procfs"
)

// sample is a table with one object of every kind and a mapping.
func sample() *Table {
	return &Table{
		Objects: []Object{
			{Kind: Eventfd, Descs: []Desc{{Flags: 0o4000, FDs: []FD{{10, true}, {20, false}}}}, Eventfd: procfs.EventfdInfo{Count: 5, Semaphore: true}},
			{Kind: Timerfd, Descs: []Desc{{FDs: []FD{{14, false}}}}, Timer: procfs.TimerInfo{Clock: 1, Ticks: 2, Value: 99e9, Interval: 7e9}},
			{Kind: Signalfd, Descs: []Desc{{FDs: []FD{{17, false}}}}, SigMask: 1 << 9},
			{Kind: Pipe, Descs: []Desc{{End: 0, FDs: []FD{{12, false}}}, {End: 1, Flags: 0o4000, FDs: []FD{{13, false}}}}, PipeSize: 65536, Data: []byte("hello")},
			{Kind: SocketPair, Descs: []Desc{{End: 0, FDs: []FD{{21, false}}}, {End: 1, FDs: []FD{{22, true}}}}, SockType: 2, Queued: [2][][]byte{nil, {[]byte("one"), {}}}, Shutdown: [2]uint8{1, 0}},
			{Kind: Epoll, Descs: []Desc{{FDs: []FD{{15, true}}}}, Watches: []Watch{{10, 1, 0x1010}, {12, 1<<31 | 1, 0x1212}}},
			{Kind: File, Descs: []Desc{{Flags: 2 | 0o2000, Pos: 3, FDs: []FD{{30, false}, {31, true}}}, {Flags: 0, Pos: 9, FDs: []FD{{32, false}}}},
				File: FileInfo{Kind: Memfd, Name: "buf", Mode: 0o642, Size: 8192, Seals: 6, Extents: []Extent{{0, []byte("hello")}, {4096, []byte("x")}}}},
			{Kind: File, Descs: []Desc{{Flags: 1, FDs: []FD{{33, false}}}},
				File: FileInfo{Kind: Ghost, Name: "/tmp/gone", Mode: 0o741, Uid: 7, Gid: 8, Size: 1 << 30,
					Atime: unix.Timespec{Sec: 1000, Nsec: 5}, Mtime: unix.Timespec{Sec: 2000, Nsec: 7}, Extents: []Extent{{1 << 20, []byte("tail")}}}},
			{Kind: Fifo, Path: "/tmp/fifo", PipeSize: 65536, Data: []byte("queued"),
				Descs: []Desc{{Flags: 2, FDs: []FD{{40, false}}}, {Flags: 0o4000, FDs: []FD{{41, true}, {42, false}}}}},
			{Kind: Socket, Descs: []Desc{{Flags: 0o4000, FDs: []FD{{50, true}, {51, false}}}}, Sock: SocketInfo{
				Family: unix.AF_INET, Type: unix.SOCK_DGRAM, Protocol: unix.IPPROTO_UDP, Shutdown: 2,
				Addr: inet4Raw(&unix.SockaddrInet4{Port: 5000, Addr: [4]byte{127, 0, 0, 1}}),
				Peer: inet4Raw(&unix.SockaddrInet4{Port: 5001, Addr: [4]byte{127, 0, 0, 1}}),
				Opts: []SockOpt{{unix.SOL_SOCKET, unix.SO_BROADCAST, 1}, {unix.SOL_IP, unix.IP_TOS, 16}}}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{52, false}}}}, Sock: SocketInfo{
				Family: unix.AF_INET6, Type: unix.SOCK_STREAM, Protocol: unix.IPPROTO_TCP, Listening: true, Backlog: 128,
				Addr:   inet6Raw(&unix.SockaddrInet6{Port: 8080, ZoneId: 1}),
				Opts:   []SockOpt{{unix.SOL_IPV6, unix.IPV6_V6ONLY, 1}, {unix.SOL_TCP, unix.TCP_NODELAY, 1}},
				Device: "lo", Linger: &Linger{On: true, Seconds: 30}, RcvTimeo: 2500000, SndTimeo: 1}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{53, false}}}}, Sock: SocketInfo{
				Family: unix.AF_UNIX, Type: unix.SOCK_DGRAM, Addr: unixRaw([]byte("/tmp/srv.sock\x00")),
				Opts:   []SockOpt{{unix.SOL_SOCKET, unix.SO_PASSCRED, 1}},
				Queued: []Datagram{{Data: []byte("anon")}, {From: unixRaw([]byte("rel/self\x00")), Data: []byte("later sender")}}}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{54, false}}}}, Sock: SocketInfo{
				Family: unix.AF_UNIX, Type: unix.SOCK_DGRAM, Peer: unixRaw([]byte("/tmp/srv.sock\x00"))}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{57, false}}}}, Sock: SocketInfo{
				Family: unix.AF_UNIX, Type: unix.SOCK_DGRAM, Orphan: true, Queued: []Datagram{{Data: []byte("left")}, {Data: []byte{}}}}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{56, false}}}}, Sock: SocketInfo{
				Family: unix.AF_UNIX, Type: unix.SOCK_DGRAM, Addr: unixRaw([]byte("rel/self\x00")), Peer: unixRaw([]byte("rel/self\x00"))}},
			{Kind: Socket, Descs: []Desc{{FDs: []FD{{55, false}}}}, Sock: SocketInfo{
				Family: unix.AF_UNIX, Type: unix.SOCK_SEQPACKET, Addr: unixRaw([]byte("\x00abstract")), Listening: true, Backlog: 16}},
		},
		Memory:  []Memory{{Start: 0x7f0000000000, End: 0x7f0000002000, Prot: 3}},
		Scratch: 1 << 32,
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	for _, tbl := range []*Table{sample(), {}} {
		got, err := Decode(tbl.Encode())
		if err != nil || !reflect.DeepEqual(got, tbl) {
			t.Errorf("Decode(Encode(%+v)) = %+v, %v", tbl, got, err)
		}
	}
}

func TestDecodeRefuses(t *testing.T) {
	good := sample().Encode()
	mutate := func(f func(*Table)) []byte { s := sample(); f(s); return s.Encode() }
	for name, b := range map[string][]byte{
		"empty":          nil,
		"truncated":      good[:len(good)-1],
		"trailing":       append(append([]byte(nil), good...), 0),
		"version":        append([]byte{0x43, 0x5a, 0x4b, 0x4f, 9, 0}, good[6:]...),
		"unknown kind":   mutate(func(s *Table) { s.Objects[0].Kind = 99 }),
		"fd twice":       mutate(func(s *Table) { s.Objects[1].Descs[0].FDs[0].Num = 10 }),
		"negative fd":    mutate(func(s *Table) { s.Objects[1].Descs[0].FDs[0].Num = -1 }),
		"pipe one end":   mutate(func(s *Table) { s.Objects[3].Descs = s.Objects[3].Descs[:1] }),
		"pipe overfull":  mutate(func(s *Table) { s.Objects[3].PipeSize = 4096; s.Objects[3].Data = make([]byte, 5000) }),
		"bad clock":      mutate(func(s *Table) { s.Objects[1].Timer.Clock = 77 }),
		"cancel on set":  mutate(func(s *Table) { s.Objects[1].Timer.SetFlags = 2 }),
		"bad flags":      mutate(func(s *Table) { s.Objects[0].Descs[0].Flags = 0o1 }),
		"unaligned map":  mutate(func(s *Table) { s.Memory[0].Start++ }),
		"scratch inside": mutate(func(s *Table) { s.Scratch = s.Memory[0].Start }),
		"stray scratch":  mutate(func(s *Table) { s.Memory = nil }),
		"huge memory":    mutate(func(s *Table) { s.Memory[0].End = s.Memory[0].Start + MaxMemory + 4096 }),
		"socket type":    mutate(func(s *Table) { s.Objects[4].SockType = 3 }),
		"shutdown bits":  mutate(func(s *Table) { s.Objects[4].Shutdown[0] = 4 }),
		"stream shutdown not mirrored": mutate(func(s *Table) {
			s.Objects[4].SockType = unix.SOCK_STREAM
			s.Objects[4].Queued[1] = s.Objects[4].Queued[1][:1]
		}),
		"stream of two":  mutate(func(s *Table) { s.Objects[4].SockType = 1 }),
		"queue too long": mutate(func(s *Table) { s.Objects[4].Queued[0] = make([][]byte, MaxMessages+1) }),
		"file kind":      mutate(func(s *Table) { s.Objects[6].File.Kind = 9 }),
		"relative ghost": mutate(func(s *Table) { s.Objects[7].File.Name = "tmp/gone" }),
		"ghost dotdot":   mutate(func(s *Table) { s.Objects[7].File.Name = "/tmp/../etc/x" }),
		"ghost NUL":      mutate(func(s *Table) { s.Objects[7].File.Name = "/tmp/a\x00b" }),
		"ghost seals":    mutate(func(s *Table) { s.Objects[7].File.Seals = 1 }),
		"long memfd":     mutate(func(s *Table) { s.Objects[6].File.Name = string(make([]byte, 250)) }),
		"file mode":      mutate(func(s *Table) { s.Objects[6].File.Mode = 0o170000 }),
		"extent past":    mutate(func(s *Table) { s.Objects[6].File.Extents[1].Off = 8192 }),
		"extent order":   mutate(func(s *Table) { s.Objects[6].File.Extents[1].Off = 2 }),
		"empty extent":   mutate(func(s *Table) { s.Objects[6].File.Extents[1].Data = nil }),
		"file too big":   mutate(func(s *Table) { s.Objects[7].File.Size = MaxFileSize + 1 }),
		"bad nsec":       mutate(func(s *Table) { s.Objects[7].File.Mtime.Nsec = 1e9 }),
		"file no desc":   mutate(func(s *Table) { s.Objects[7].Descs = nil }),
		"file accmode":   mutate(func(s *Table) { s.Objects[7].Descs[0].Flags = 3 }),
		"file flags":     mutate(func(s *Table) { s.Objects[7].Descs[0].Flags = 0o100 }),
		"file offset":    mutate(func(s *Table) { s.Objects[7].Descs[0].Pos = -1 }),
		"file in v1":     append([]byte{0x43, 0x5a, 0x4b, 0x4f, 1, 0}, good[6:]...),
		"FIFO in v2":     append([]byte{0x43, 0x5a, 0x4b, 0x4f, 2, 0}, good[6:]...),
		"FIFO relative":  mutate(func(s *Table) { s.Objects[8].Path = "tmp/fifo" }),
		"FIFO dotdot":    mutate(func(s *Table) { s.Objects[8].Path = "/tmp/../etc/passwd" }),
		"FIFO in /proc":  mutate(func(s *Table) { s.Objects[8].Path = "/proc/1/fd/3" }),
		"FIFO NUL":       mutate(func(s *Table) { s.Objects[8].Path = "/tmp/a\x00b" }),
		"FIFO overfull":  mutate(func(s *Table) { s.Objects[8].PipeSize = 4096; s.Objects[8].Data = make([]byte, 5000) }),
		"FIFO accmode":   mutate(func(s *Table) { s.Objects[8].Descs[0].Flags = 3 }),
		"FIFO flags":     mutate(func(s *Table) { s.Objects[8].Descs[0].Flags = unix.O_APPEND }),
		"FIFO no desc":   mutate(func(s *Table) { s.Objects[8].Descs = nil }),
		"FIFO data": mutate(func(s *Table) {
			s.Objects[8].PipeSize = 1 << 20
			s.Objects[8].Data = make([]byte, MaxData+1)
		}),
		"socket in v3":         append([]byte{0x43, 0x5a, 0x4b, 0x4f, 3, 0}, good[6:]...),
		"socket family":        mutate(func(s *Table) { s.Objects[9].Sock.Family = unix.AF_PACKET }),
		"unix socket":          mutate(func(s *Table) { s.Objects[9].Sock.Family = unix.AF_UNIX }),
		"raw socket":           mutate(func(s *Table) { s.Objects[9].Sock.Type = unix.SOCK_RAW }),
		"udp over stream":      mutate(func(s *Table) { s.Objects[10].Sock.Protocol = unix.IPPROTO_UDP }),
		"listening udp":        mutate(func(s *Table) { s.Objects[9].Sock.Listening = true }),
		"udp backlog":          mutate(func(s *Table) { s.Objects[9].Sock.Backlog = 5 }),
		"connected tcp":        mutate(func(s *Table) { s.Objects[10].Sock.Peer = inet6Raw(&unix.SockaddrInet6{Port: 1}) }),
		"shut down tcp":        mutate(func(s *Table) { s.Objects[10].Sock.Shutdown = 1 }),
		"unbound listener":     mutate(func(s *Table) { s.Objects[10].Sock.Addr = nil }),
		"backlog no listen":    mutate(func(s *Table) { s.Objects[10].Sock.Listening = false }),
		"shutdown state":       mutate(func(s *Table) { s.Objects[9].Sock.Shutdown = 4 }),
		"addr of v6 on v4":     mutate(func(s *Table) { s.Objects[9].Sock.Addr = s.Objects[10].Sock.Addr }),
		"addr family":          mutate(func(s *Table) { s.Objects[9].Sock.Addr[0] = unix.AF_INET6 }),
		"addr short":           mutate(func(s *Table) { s.Objects[9].Sock.Addr = s.Objects[9].Sock.Addr[:8] }),
		"addr port 0":          mutate(func(s *Table) { s.Objects[9].Sock.Peer[2], s.Objects[9].Sock.Peer[3] = 0, 0 }),
		"addr padding":         mutate(func(s *Table) { s.Objects[9].Sock.Addr[15] = 1 }),
		"flow label":           mutate(func(s *Table) { s.Objects[10].Sock.Addr[5] = 1 }),
		"unknown option":       mutate(func(s *Table) { s.Objects[9].Sock.Opts[0].Name = unix.SO_SNDBUFFORCE }),
		"v6 option on v4":      mutate(func(s *Table) { s.Objects[9].Sock.Opts[0] = SockOpt{unix.SOL_IPV6, unix.IPV6_V6ONLY, 1} }),
		"option range":         mutate(func(s *Table) { s.Objects[9].Sock.Opts[1].Value = 256 }),
		"negative option":      mutate(func(s *Table) { s.Objects[9].Sock.Opts[0].Value = -1 }),
		"option twice":         mutate(func(s *Table) { s.Objects[9].Sock.Opts[1] = s.Objects[9].Sock.Opts[0] }),
		"options":              mutate(func(s *Table) { s.Objects[9].Sock.Opts = make([]SockOpt, MaxSockOpts+1) }),
		"tcp option on udp":    mutate(func(s *Table) { s.Objects[9].Sock.Opts[0] = SockOpt{unix.SOL_TCP, unix.TCP_NODELAY, 1} }),
		"device slash":         mutate(func(s *Table) { s.Objects[10].Sock.Device = "../lo" }),
		"device long":          mutate(func(s *Table) { s.Objects[10].Sock.Device = "0123456789abcdef" }),
		"device NUL":           mutate(func(s *Table) { s.Objects[10].Sock.Device = "l\x00o" }),
		"linger negative":      mutate(func(s *Table) { s.Objects[10].Sock.Linger.Seconds = -1 }),
		"linger off zero":      mutate(func(s *Table) { s.Objects[10].Sock.Linger = &Linger{} }),
		"unix relative dotdot": mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("../srv.sock\x00")) }),
		"unix double slash":    mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("a//b\x00")) }),
		"unix dotdot":          mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("/tmp/../etc/x\x00")) }),
		"unix in proc":         mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("/proc/1/x\x00")) }),
		"unix no NUL":          mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("/tmp/srv.sock")) }),
		"unix inner NUL":       mutate(func(s *Table) { s.Objects[11].Sock.Addr = unixRaw([]byte("/tmp/a\x00b\x00")) }),
		"unix too long":        mutate(func(s *Table) { s.Objects[15].Sock.Addr = unixRaw(make([]byte, 109)) }),
		"unix empty abstract":  mutate(func(s *Table) { s.Objects[15].Sock.Addr = unixRaw([]byte{0}) }),
		"unix peer unbound":    mutate(func(s *Table) { s.Objects[12].Sock.Peer = unixRaw([]byte("/tmp/other\x00")) }),
		"unix peer listener":   mutate(func(s *Table) { s.Objects[12].Sock.Peer = s.Objects[15].Sock.Addr }),
		"unix peer later": mutate(func(s *Table) {
			s.Objects[11], s.Objects[12] = s.Objects[12], s.Objects[11]
			s.Objects[11].Descs, s.Objects[12].Descs = s.Objects[12].Descs, s.Objects[11].Descs
		}),
		"unix stream peer":      mutate(func(s *Table) { s.Objects[12].Sock.Type = unix.SOCK_STREAM }),
		"unix bound twice":      mutate(func(s *Table) { s.Objects[15].Sock.Addr = s.Objects[11].Sock.Addr }),
		"unix protocol":         mutate(func(s *Table) { s.Objects[11].Sock.Protocol = 1 }),
		"unix shutdown":         mutate(func(s *Table) { s.Objects[11].Sock.Shutdown = 1 }),
		"unix device":           mutate(func(s *Table) { s.Objects[11].Sock.Device = "lo" }),
		"unix ip option":        mutate(func(s *Table) { s.Objects[11].Sock.Opts[0] = SockOpt{unix.SOL_IP, unix.IP_FREEBIND, 1} }),
		"unix listening dgram":  mutate(func(s *Table) { s.Objects[11].Sock.Listening = true; s.Objects[11].Sock.Backlog = 1 }),
		"unix unbound listener": mutate(func(s *Table) { s.Objects[15].Sock.Addr = nil }),
		"unix raw type":         mutate(func(s *Table) { s.Objects[11].Sock.Type = unix.SOCK_RAW }),
		"orphan bound":          mutate(func(s *Table) { s.Objects[13].Sock.Addr = unixRaw([]byte("/tmp/o\x00")) }),
		"orphan from":           mutate(func(s *Table) { s.Objects[13].Sock.Queued[0].From = s.Objects[11].Sock.Addr }),
		"orphan inet":           mutate(func(s *Table) { s.Objects[9].Sock.Orphan = true }),
		"queued at inet":        mutate(func(s *Table) { s.Objects[9].Sock.Queued = []Datagram{{Data: []byte("x")}} }),
		"queued at stream":      mutate(func(s *Table) { s.Objects[15].Sock.Queued = []Datagram{{Data: []byte("x")}} }),
		"queued at unbound":     mutate(func(s *Table) { s.Objects[13].Sock.Orphan = false }),
		"queued from nowhere":   mutate(func(s *Table) { s.Objects[11].Sock.Queued[1].From = unixRaw([]byte("/tmp/none\x00")) }),
		"queued from stream":    mutate(func(s *Table) { s.Objects[11].Sock.Queued[1].From = s.Objects[15].Sock.Addr }),
		"queued too many":       mutate(func(s *Table) { s.Objects[13].Sock.Queued = make([]Datagram, MaxMessages+1) }),
		"queued too much":       mutate(func(s *Table) { s.Objects[13].Sock.Queued[0].Data = make([]byte, MaxQueued+1) }),
		"unbound at connected":  mutate(func(s *Table) { s.Objects[14].Sock.Queued = []Datagram{{Data: []byte("x")}} }),
		"not from the peer": mutate(func(s *Table) {
			s.Objects[14].Sock.Queued = []Datagram{{From: s.Objects[11].Sock.Addr, Data: []byte("x")}}
		}),
		"timeout negative": mutate(func(s *Table) { s.Objects[10].Sock.RcvTimeo = -1 }),
		"timeout huge":     mutate(func(s *Table) { s.Objects[10].Sock.SndTimeo = maxTimeo + 1 }),
		"socket two descs": mutate(func(s *Table) { s.Objects[9].Descs = append(s.Objects[9].Descs, Desc{FDs: []FD{{60, false}}}) }),
		"file data": mutate(func(s *Table) {
			s.Objects[7].File.Size = MaxFileSize
			s.Objects[7].File.Extents[0].Data = make([]byte, MaxFileData+1)
		}),
	} {
		if _, err := Decode(b); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
	}
}

// TestDecodeVersion1 reads a table of the previous format version (no
// file objects, no offsets): images written before files were kept.
func TestDecodeVersion1(t *testing.T) {
	s := sample()
	// No socket pair: version 3 added its shutdown states.
	s.Objects = append(s.Objects[:4:4], s.Objects[5])
	b := s.Encode()
	b[4] = 1
	got, err := Decode(b)
	if err != nil || !reflect.DeepEqual(got, s) {
		t.Errorf("version 1: %+v, %v", got, err)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(sample().Encode())
	f.Add((&Table{}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		tbl, err := Decode(b)
		if err != nil {
			if !errors.Is(err, errdefs.ErrInvalid) {
				t.Fatalf("Decode error %v does not wrap ErrInvalid", err)
			}
			return
		}
		again, err := Decode(tbl.Encode())
		if err != nil || !reflect.DeepEqual(again, tbl) {
			t.Fatalf("re-decode = %+v, %v; want %+v", again, err, tbl)
		}
	})
}
