package procfs

import (
	"fmt"
	"strconv"
	"strings"
)

// ObjectInfo is the kind-specific part of /proc/PID/fdinfo/N for the
// anon-inode objects whose state a copy of the process must be given
// (fs/eventfd.c, fs/timerfd.c, fs/signalfd.c, fs/eventpoll.c print it).
// A field is set only where its lines are there.
type ObjectInfo struct {
	// Eventfd is set for an eventfd ("eventfd-count:", in hex).
	Eventfd *EventfdInfo
	// SigMask is set for a signalfd ("sigmask:", in hex): bit n-1 for
	// signal n.
	SigMask *uint64
	// Timer is set for a timerfd.
	Timer *TimerInfo
	// Watches are an epoll instance's registrations ("tfd:" lines), in
	// the order the kernel prints them.
	Watches []EpollWatch
}

// EventfdInfo is an eventfd's counter and mode.
type EventfdInfo struct {
	Count     uint64
	Semaphore bool // "eventfd-semaphore: 1" (EFD_SEMAPHORE)
}

// TimerInfo is a timerfd's setting: Value is the time left until it
// fires next (as timerfd_gettime gives it), Interval its period, both in
// nanoseconds; Ticks the expirations not yet read.
type TimerInfo struct {
	Clock    int
	Ticks    uint64
	SetFlags int // "settime flags:" (TFD_TIMER_ABSTIME, TFD_TIMER_CANCEL_ON_SET)
	Value    int64
	Interval int64
}

// EpollWatch is one registration of an epoll instance: the descriptor
// number it was added by, its event mask (EPOLLET, EPOLLONESHOT...
// included) and data, and the inode and device of the file it watches.
type EpollWatch struct {
	FD     int
	Events uint32
	Data   uint64
	Ino    uint64
	Dev    uint64
}

// ParseObjectInfo parses the kind-specific lines of an fdinfo text (the
// common ones are ParseFDInfo's). Lines it does not know are ignored; a
// known line without the form the kernel gives it, or a line of one kind
// given twice (a second "tfd:" is a second watch), is an error wrapping
// ErrFormat.
func ParseObjectInfo(b []byte) (ObjectInfo, error) {
	p := objectParser{seen: map[string]bool{}}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		parse, known := objectLines[k]
		if !ok || !known {
			continue
		}
		if k != "tfd" {
			if p.seen[k] {
				return ObjectInfo{}, fmt.Errorf("fdinfo %q: %w", line, ErrFormat)
			}
			p.seen[k] = true
		}
		if err := parse(&p, strings.TrimSpace(v)); err != nil {
			return ObjectInfo{}, fmt.Errorf("fdinfo %q: %w", line, ErrFormat)
		}
	}
	timerSeen := 0
	for _, k := range timerLines {
		if p.seen[k] {
			timerSeen++
		}
	}
	switch timerSeen {
	case 0:
	case len(timerLines):
		p.oi.Timer = &p.timer
	default:
		return ObjectInfo{}, fmt.Errorf("fdinfo: timerfd lines incomplete (%d of 5): %w", timerSeen, ErrFormat)
	}
	return p.oi, nil
}

// objectParser is what ParseObjectInfo has read so far.
type objectParser struct {
	oi    ObjectInfo
	timer TimerInfo // set only when all of timerLines are there
	seen  map[string]bool
}

// eventfd is the eventfd part, made at its first line.
func (p *objectParser) eventfd() *EventfdInfo {
	if p.oi.Eventfd == nil {
		p.oi.Eventfd = &EventfdInfo{}
	}
	return p.oi.Eventfd
}

// timerLines are the lines of a timerfd's setting: all or none.
var timerLines = []string{"clockid", "ticks", "settime flags", "it_value", "it_interval"}

// objectLines parse the value of each kind-specific line into p.
var objectLines = map[string]func(p *objectParser, v string) error{
	"eventfd-count": func(p *objectParser, v string) error {
		n, err := strconv.ParseUint(v, 16, 64)
		if err == nil {
			p.eventfd().Count = n
		}
		return err
	},
	"eventfd-semaphore": func(p *objectParser, v string) error {
		if v != "0" && v != "1" {
			return ErrFormat
		}
		p.eventfd().Semaphore = v == "1"
		return nil
	},
	"sigmask": func(p *objectParser, v string) error {
		m, err := strconv.ParseUint(v, 16, 64)
		if err == nil {
			p.oi.SigMask = &m
		}
		return err
	},
	"clockid": func(p *objectParser, v string) (err error) {
		p.timer.Clock, err = strconv.Atoi(v)
		return err
	},
	"ticks": func(p *objectParser, v string) (err error) {
		p.timer.Ticks, err = strconv.ParseUint(v, 10, 64)
		return err
	},
	"settime flags": func(p *objectParser, v string) error {
		f, err := strconv.ParseUint(v, 8, 32)
		p.timer.SetFlags = int(f)
		return err
	},
	"it_value": func(p *objectParser, v string) (err error) {
		p.timer.Value, err = parseTimespec(v)
		return err
	},
	"it_interval": func(p *objectParser, v string) (err error) {
		p.timer.Interval, err = parseTimespec(v)
		return err
	},
	"tfd": func(p *objectParser, v string) error {
		w, err := parseWatch(v)
		if err == nil {
			p.oi.Watches = append(p.oi.Watches, w)
		}
		return err
	},
}

// parseTimespec parses "(SEC, NSEC)" into nanoseconds.
func parseTimespec(v string) (int64, error) {
	in, open := strings.CutPrefix(v, "(")
	in, closed := strings.CutSuffix(in, ")")
	if !open || !closed {
		return 0, ErrFormat
	}
	s, ns, ok := strings.Cut(in, ",")
	if !ok {
		return 0, ErrFormat
	}
	sec, err := strconv.ParseUint(strings.TrimSpace(s), 10, 63)
	if err != nil || sec > 1<<33 {
		return 0, ErrFormat
	}
	nsec, err := strconv.ParseUint(strings.TrimSpace(ns), 10, 32)
	if err != nil || nsec >= 1e9 {
		return 0, ErrFormat
	}
	return int64(sec)*1e9 + int64(nsec), nil
}

// parseWatch parses what follows "tfd:":
// "%8d events: %8x data: %16llx  pos:%lli ino:%lx sdev:%x".
func parseWatch(v string) (EpollWatch, error) {
	var w EpollWatch
	f := strings.Fields(v)
	if len(f) != 8 || f[1] != "events:" || f[3] != "data:" {
		return w, ErrFormat
	}
	fd, err := strconv.ParseUint(f[0], 10, 31)
	if err != nil {
		return w, ErrFormat
	}
	w.FD = int(fd)
	ev, err := strconv.ParseUint(f[2], 16, 32)
	if err != nil {
		return w, ErrFormat
	}
	w.Events = uint32(ev)
	if w.Data, err = strconv.ParseUint(f[4], 16, 64); err != nil {
		return w, ErrFormat
	}
	ino, ok1 := strings.CutPrefix(f[6], "ino:")
	dev, ok2 := strings.CutPrefix(f[7], "sdev:")
	if !strings.HasPrefix(f[5], "pos:") || !ok1 || !ok2 {
		return w, ErrFormat
	}
	if w.Ino, err = strconv.ParseUint(ino, 16, 64); err != nil {
		return w, ErrFormat
	}
	if w.Dev, err = strconv.ParseUint(dev, 16, 64); err != nil {
		return w, ErrFormat
	}
	return w, nil
}
