package procfs

import (
	"errors"
	"reflect"
	"testing"
)

const sampleTimers = `ID: 3
signal: 14/0000000000000000
notify: signal/pid.32090
ClockID: 0
ID: 2
signal: 0/0000000000000000
notify: none/pid.32090
ClockID: 7
ID: 1
signal: 12/00007ffd12345678
notify: signal/tid.32091
ClockID: 1
`

func TestParseTimers(t *testing.T) {
	got, err := ParseTimers([]byte(sampleTimers))
	if err != nil {
		t.Fatal(err)
	}
	want := []PosixTimer{
		{ID: 3, Signo: 14, Notify: SigevSignal, TID: 32090, Clock: 0},
		{ID: 2, Signo: 0, Notify: SigevNone, TID: 32090, Clock: 7},
		{ID: 1, Signo: 12, Value: 0x7ffd12345678, Notify: SigevThreadID, TID: 32091, Clock: 1},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("ParseTimers = %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{
		"signal: 1/0\n", // no ID first
		"ID: 1\nsignal: 1/0\nnotify: signal/pid.1\n", // no clock
		"ID: 1\nsignal: 65/0\nnotify: signal/pid.1\nClockID: 0\n",
		"ID: 1\nsignal: 1/0\nnotify: thread/pid.1\nClockID: 0\n",
		"ID: 1\nsignal: 1/0\nnotify: none/tid.1\nClockID: 0\n",
		"ID: -1\nsignal: 1/0\nnotify: signal/pid.1\nClockID: 0\n",
		"ID: 1\nsignal: 1/zz\nnotify: signal/pid.1\nClockID: 0\n",
		"garbage\n",
	} {
		if _, err := ParseTimers([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseTimers(%q) = %v, want ErrFormat", bad, err)
		}
	}
}

func FuzzParseTimers(f *testing.F) {
	f.Add([]byte(sampleTimers))
	f.Add([]byte("ID: 0\nsignal: 0/0\nnotify: none/pid.1\nClockID: 11\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ts, err := ParseTimers(b)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		for _, x := range ts {
			if x.ID < 0 || x.Signo < 0 || x.Signo > 64 || x.TID < 0 || x.Clock < 0 ||
				(x.Notify != SigevSignal && x.Notify != SigevNone && x.Notify != SigevThreadID) {
				t.Fatalf("ParseTimers accepted %+v", x)
			}
		}
	})
}
