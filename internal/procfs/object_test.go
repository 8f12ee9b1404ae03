package procfs

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// renderObjectInfo prints oi the way the kernel does.
func renderObjectInfo(oi ObjectInfo) string {
	var s strings.Builder
	s.WriteString("pos:\t0\nflags:\t02\nmnt_id:\t15\nino:\t1038\n")
	if e := oi.Eventfd; e != nil {
		sem := 0
		if e.Semaphore {
			sem = 1
		}
		fmt.Fprintf(&s, "eventfd-count: %16x\neventfd-id: 3\neventfd-semaphore: %d\n", e.Count, sem)
	}
	if oi.SigMask != nil {
		fmt.Fprintf(&s, "sigmask:\t%016x\n", *oi.SigMask)
	}
	if t := oi.Timer; t != nil {
		fmt.Fprintf(&s, "clockid: %d\nticks: %d\nsettime flags: 0%o\nit_value: (%d, %d)\nit_interval: (%d, %d)\n",
			t.Clock, t.Ticks, t.SetFlags, t.Value/1e9, t.Value%1e9, t.Interval/1e9, t.Interval%1e9)
	}
	for _, w := range oi.Watches {
		fmt.Fprintf(&s, "tfd: %8d events: %8x data: %16x  pos:0 ino:%x sdev:%x\n", w.FD, w.Events, w.Data, w.Ino, w.Dev)
	}
	return s.String()
}

func TestParseObjectInfo(t *testing.T) {
	mask := uint64(0x4002)
	for _, tc := range []struct {
		text string
		want ObjectInfo
	}{
		{"pos:\t0\nflags:\t02004002\nmnt_id:\t17\nino:\t1038\neventfd-count:                5\neventfd-id: 2\neventfd-semaphore: 1\n",
			ObjectInfo{Eventfd: &EventfdInfo{Count: 5, Semaphore: true}}},
		{"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\ntfd:       17 events:       19 data:               11  pos:0 ino:40e sdev:10\n" +
			"tfd:       15 events: 80000001 data:     7f0012345678  pos:0 ino:206f82 sdev:f\n",
			ObjectInfo{Watches: []EpollWatch{{17, 0x19, 0x11, 0x40e, 0x10}, {15, 0x80000001, 0x7f0012345678, 0x206f82, 0xf}}}},
		{"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nclockid: 1\nticks: 3\nsettime flags: 01\nit_value: (2, 500)\nit_interval: (0, 250000000)\n",
			ObjectInfo{Timer: &TimerInfo{Clock: 1, Ticks: 3, SetFlags: 1, Value: 2e9 + 500, Interval: 250000000}}},
		{"pos:\t0\nflags:\t02\nmnt_id:\t17\nino:\t1038\nsigmask:\t0000000000004002\n", ObjectInfo{SigMask: &mask}},
		{"pos:\t0\nflags:\t02\nmnt_id:\t16\nino:\t7\n", ObjectInfo{}},
		{"pos:\t0\nflags:\t02000000\ninotify wd:1 ino:2 sdev:3 mask:fff ignored_mask:0\n", ObjectInfo{}},
	} {
		got, err := ParseObjectInfo([]byte(tc.text))
		if err != nil || !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ParseObjectInfo(%q) = %+v, %v; want %+v", tc.text, got, err, tc.want)
		}
	}
	for _, bad := range []string{
		"eventfd-count: zz\n",
		"eventfd-count: 1\neventfd-count: 2\n",
		"eventfd-semaphore: 2\n",
		"sigmask:\tnothex\n",
		"clockid: 1\nticks: 0\n", // incomplete timer
		"clockid: 1\nticks: 0\nsettime flags: 0\nit_value: (0, 2000000000)\nit_interval: (0, 0)\n",
		"clockid: 1\nticks: 0\nsettime flags: 0\nit_value: 0, 0\nit_interval: (0, 0)\n",
		"clockid: 1\nticks: 0\nsettime flags: 0\nit_value: 0, 0)\nit_interval: (0, 0)\n",
		"tfd: 3 events: 1 data: 0\n",
		"tfd: -3 events: 1 data: 0  pos:0 ino:1 sdev:1\n",
		"tfd: 3 events: 1 data: 0  pos:0 inode:1 sdev:1\n",
	} {
		if _, err := ParseObjectInfo([]byte(bad)); !errors.Is(err, ErrFormat) {
			t.Errorf("ParseObjectInfo(%q) = %v, want ErrFormat", bad, err)
		}
	}
}

func parseObjectInfoBody(t *testing.T, b []byte) {
	oi, err := ParseObjectInfo(b)
	if err != nil {
		if !errors.Is(err, ErrFormat) {
			t.Fatalf("ParseObjectInfo error %v does not wrap ErrFormat", err)
		}
		return
	}
	s := renderObjectInfo(oi)
	oi2, err := ParseObjectInfo([]byte(s))
	if err != nil || !reflect.DeepEqual(oi, oi2) {
		t.Fatalf("reparse of %q = %+v, %v; want %+v", s, oi2, err, oi)
	}
}

func FuzzParseObjectInfo(f *testing.F) {
	f.Add([]byte("eventfd-count:                5\neventfd-id: 2\neventfd-semaphore: 0\n"))
	f.Add([]byte("tfd:       17 events:       19 data:               11  pos:0 ino:40e sdev:10\n"))
	f.Add([]byte("clockid: 1\nticks: 3\nsettime flags: 01\nit_value: (2, 500)\nit_interval: (0, 250000000)\n"))
	f.Add([]byte("sigmask:\t0000000000004002\n"))
	f.Fuzz(func(t *testing.T, b []byte) { parseObjectInfoBody(t, b) })
}
