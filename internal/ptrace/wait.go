package ptrace

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// StopKind classifies what wait4 reported for a tracee (see ptrace(2),
// "Stopped states").
type StopKind int

const (
	StopExited    StopKind = iota // exited normally (ExitStatus)
	StopKilled                    // killed by Signal
	StopSignal                    // signal-delivery stop for Signal
	StopGroup                     // group stop (Signal is the stopping signal)
	StopInterrupt                 // PTRACE_INTERRUPT or initial auto-attach stop
	StopEvent                     // PTRACE_EVENT_* stop (Event, EventMsg)
	StopSyscall                   // syscall-entry or -exit stop (TRACESYSGOOD)
)

var stopNames = [...]string{"exited", "killed", "signal", "group-stop", "interrupt", "event", "syscall"}

func (k StopKind) String() string {
	if int(k) < len(stopNames) {
		return stopNames[k]
	}
	return fmt.Sprintf("stop(%d)", int(k))
}

// Stop describes one stop (or the end) of a tracee.
type Stop struct {
	Kind       StopKind
	Signal     unix.Signal
	Event      int    // PTRACE_EVENT_* for StopEvent
	EventMsg   uint64 // PTRACE_GETEVENTMSG: the new pid for clone/fork/vfork events
	ExitStatus int
}

func (s Stop) String() string {
	switch s.Kind {
	case StopExited:
		return fmt.Sprintf("exited with status %d", s.ExitStatus)
	case StopKilled:
		return fmt.Sprintf("killed by %v", s.Signal)
	case StopEvent:
		return fmt.Sprintf("event %d (msg %d)", s.Event, s.EventMsg)
	}
	return fmt.Sprintf("%v %v", s.Kind, s.Signal)
}

// IsFork reports a clone/fork/vfork event; EventMsg is the child's pid.
func (s Stop) IsFork() bool {
	return s.Kind == StopEvent && (s.Event == unix.PTRACE_EVENT_CLONE ||
		s.Event == unix.PTRACE_EVENT_FORK || s.Event == unix.PTRACE_EVENT_VFORK)
}

// Wait waits for the running tracee's next stop. An exit is reported as a
// Stop of kind StopExited or StopKilled, with a nil error.
func (t *Tracee) Wait() (Stop, error) {
	var s Stop
	err := t.tr.Do(func() error {
		if t.st != stateRunning {
			return fmt.Errorf("wait %d: not running: %w", t.pid, ErrState)
		}
		var err error
		s, err = t.wait()
		if s.Kind == StopExited || s.Kind == StopKilled {
			return nil // an exit is an answer, not a failure
		}
		return err
	})
	return s, err
}

// wait blocks for the next wait4 report about this tracee. An exit is
// returned as a Stop and an error wrapping ErrExited.
func (t *Tracee) wait() (Stop, error) {
	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(t.pid, &ws, unix.WALL, nil)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return Stop{}, fmt.Errorf("wait %d: %w", t.pid, err)
		}
		break
	}
	t.roundTrips.Add(1)
	var s Stop
	switch {
	case ws.Exited():
		s = Stop{Kind: StopExited, ExitStatus: ws.ExitStatus()}
	case ws.Signaled():
		s = Stop{Kind: StopKilled, Signal: ws.Signal()}
	case ws.Stopped():
		sig := unix.Signal((uint32(ws) >> 8) & 0xff)
		ev := int(uint32(ws)>>16) & 0xff
		switch {
		case sig == unix.SIGTRAP|0x80:
			s = Stop{Kind: StopSyscall, Signal: unix.SIGTRAP}
		case ev == unix.PTRACE_EVENT_STOP:
			switch sig {
			case unix.SIGSTOP, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU:
				s = Stop{Kind: StopGroup, Signal: sig}
			default:
				s = Stop{Kind: StopInterrupt, Signal: sig}
			}
		case ev != 0:
			s = Stop{Kind: StopEvent, Signal: sig, Event: ev}
			var msg uint64
			t.ptraceCalls.Add(1)
			if m, err := unix.PtraceGetEventMsg(t.pid); err == nil {
				msg = uint64(m)
			}
			s.EventMsg = msg
			if s.IsFork() {
				t.children = append(t.children, int(msg))
			}
		default:
			s = Stop{Kind: StopSignal, Signal: sig}
		}
	default:
		return Stop{}, fmt.Errorf("wait %d: unexpected status %#x", t.pid, uint32(ws))
	}
	t.last = s
	if s.Kind == StopExited || s.Kind == StopKilled {
		t.st = stateExited
		t.closeMem()
		return s, fmt.Errorf("process %d %v: %w", t.pid, s, ErrExited)
	}
	t.st = stateStopped
	return s, nil
}
