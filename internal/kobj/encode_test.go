package kobj

import (
	"errors"
	"reflect"
	"testing"

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
			{Kind: SocketPair, Descs: []Desc{{End: 0, FDs: []FD{{21, false}}}, {End: 1, FDs: []FD{{22, true}}}}, SockType: 2, Queued: [2][][]byte{nil, {[]byte("one"), {}}}},
			{Kind: Epoll, Descs: []Desc{{FDs: []FD{{15, true}}}}, Watches: []Watch{{10, 1, 0x1010}, {12, 1<<31 | 1, 0x1212}}},
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
		"stream of two":  mutate(func(s *Table) { s.Objects[4].SockType = 1 }),
		"queue too long": mutate(func(s *Table) { s.Objects[4].Queued[0] = make([][]byte, MaxMessages+1) }),
	} {
		if _, err := Decode(b); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: Decode = %v, want ErrInvalid", name, err)
		}
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
