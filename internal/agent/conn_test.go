package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// socketpair returns two connected AF_UNIX stream conns, like the daemon's
// end and the instance's fd 3.
func socketpair(t *testing.T) (daemon, agent net.Conn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conns := make([]net.Conn, 2)
	for i, fd := range fds {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		conns[i] = c
	}
	return conns[0], conns[1]
}

// fakeAgent answers each request frame with the frames reply returns.
func fakeAgent(t *testing.T, c net.Conn, reply func(Frame) []Frame) {
	go func() {
		for {
			f, err := ReadFrame(c)
			if err != nil {
				return
			}
			for _, out := range reply(f) {
				if err := WriteFrame(c, out); err != nil {
					return
				}
			}
		}
	}()
}

func mustEncode(t Type, m any) Frame {
	f, err := Encode(t, m)
	if err != nil {
		panic(err)
	}
	return f
}

func TestConnFlow(t *testing.T) {
	d, a := socketpair(t)
	fakeAgent(t, a, func(f Frame) []Frame {
		switch f.Type {
		case TypeInit, TypeForked:
			return []Frame{mustEncode(TypeLog, Log{Message: "loading"}), mustEncode(TypeReady, Ready{Version: 1, PID: 7, ReadyNS: Monotonic()})}
		case TypeInvoke:
			var inv Invoke
			if err := Decode(f, TypeInvoke, &inv); err != nil {
				panic(err)
			}
			if inv.ID == "bad" {
				return []Frame{mustEncode(TypeError, ErrorMsg{ID: inv.ID, Type: "ValueError", Message: "nope", Stdout: "out"})}
			}
			return []Frame{mustEncode(TypeLog, Log{ID: inv.ID, Message: "l1"}), mustEncode(TypeResult, Result{ID: inv.ID, Output: inv.Event})}
		}
		return nil
	})
	c := NewConn(d)
	ctx := context.Background()
	before := Monotonic()
	r, err := c.Init(ctx, Init{Function: "f", Runtime: "python", Handler: "main.handler"})
	if err != nil {
		t.Fatal(err)
	}
	if r.PID != 7 || r.ReadyNS < before || r.ReadyNS > Monotonic() || len(r.Logs) != 1 {
		t.Fatalf("ready = %+v", r)
	}
	res, err := c.Invoke(ctx, Invoke{ID: "1", Event: json.RawMessage(`{"a":1}`)})
	if err != nil {
		t.Fatal(err)
	}
	if string(res.Output) != `{"a":1}` || len(res.Logs) != 1 || res.Logs[0].Message != "l1" {
		t.Fatalf("result = %+v", res)
	}
	_, err = c.Invoke(ctx, Invoke{ID: "bad"})
	var fe *FunctionError
	if !errors.As(err, &fe) || fe.Type != "ValueError" || fe.Message != "nope" || fe.Stdout != "out" || !errors.Is(err, errdefs.ErrFunction) {
		t.Fatalf("invoke bad: %v", err)
	}
	// A function error leaves the channel usable.
	if _, err := c.Forked(ctx); err != nil {
		t.Fatalf("forked after a function error: %v", err)
	}
}

func TestConnContextUnblocks(t *testing.T) {
	d, a := socketpair(t)
	fakeAgent(t, a, func(f Frame) []Frame { return nil }) // never answers
	c := NewConn(d)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := c.Invoke(ctx, Invoke{ID: "1"})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("invoke past the deadline: %v", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("invoke took %v to give up", time.Since(start))
	}
	if _, err := c.Invoke(context.Background(), Invoke{ID: "2"}); err == nil || !strings.Contains(err.Error(), "unusable") {
		t.Fatalf("invoke on a broken conn: %v", err)
	}
}

func TestConnPeerVersionMismatch(t *testing.T) {
	d, a := socketpair(t)
	fakeAgent(t, a, func(f Frame) []Frame {
		r := mustEncode(TypeReady, Ready{Version: 2})
		r.Version = 2
		return []Frame{r}
	})
	_, err := NewConn(d).Init(context.Background(), Init{})
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "version 2") || !strings.Contains(err.Error(), "version 1") {
		t.Fatalf("init against a version-2 agent: %v", err)
	}
}

func TestConnUnexpectedFrame(t *testing.T) {
	d, a := socketpair(t)
	fakeAgent(t, a, func(f Frame) []Frame { return []Frame{mustEncode(TypeInvoke, Invoke{})} })
	_, err := NewConn(d).Init(context.Background(), Init{})
	if !errors.Is(err, ErrProtocol) {
		t.Fatalf("init answered by invoke: %v", err)
	}
}

func TestConnEOF(t *testing.T) {
	d, a := socketpair(t)
	a.Close()
	_, err := NewConn(d).Init(context.Background(), Init{})
	if err == nil {
		t.Fatal("init against a closed agent succeeded")
	}
}

// TestConnLogFlood is the attack "an instance floods its control channel
// with log frames": whatever it sends during one call, the Conn keeps at
// most MaxLogs frames and MaxLogBytes of messages, keeps reading (the
// answer still arrives, the channel stays usable) and says so.
func TestConnLogFlood(t *testing.T) {
	for _, c := range []struct {
		name       string
		n, size    int
		wantCut    bool
		wantFrames int
	}{
		{"few", 3, 10, false, 3},
		{"many small", 5000, 10, true, MaxLogs},
		{"few large", 40, 60 << 10, true, 2}, // the second one is cut to what is left
	} {
		t.Run(c.name, func(t *testing.T) {
			d, a := socketpair(t)
			msg := strings.Repeat("x", c.size)
			fakeAgent(t, a, func(f Frame) []Frame {
				var inv Invoke
				Decode(f, TypeInvoke, &inv)
				out := make([]Frame, 0, c.n+1)
				for i := 0; i < c.n; i++ {
					out = append(out, mustEncode(TypeLog, Log{ID: inv.ID, Message: msg}))
				}
				return append(out, mustEncode(TypeResult, Result{ID: inv.ID, Output: json.RawMessage(`1`)}))
			})
			conn := NewConn(d)
			for round := 0; round < 2; round++ {
				res, err := conn.Invoke(context.Background(), Invoke{ID: "1"})
				if err != nil {
					t.Fatal(err)
				}
				bytes := 0
				for _, l := range res.Logs {
					bytes += len(l.Message)
				}
				if len(res.Logs) != c.wantFrames || bytes > MaxLogBytes || res.LogsTruncated != c.wantCut || string(res.Output) != "1" {
					t.Fatalf("round %d: %d frames, %d bytes, truncated %v, output %s; want %d frames, at most %d bytes, truncated %v",
						round, len(res.Logs), bytes, res.LogsTruncated, res.Output, c.wantFrames, MaxLogBytes, c.wantCut)
				}
			}
		})
	}
}

// TestConnProtocolViolations: each violation an instance can commit on
// its channel is an error that is errdefs.ErrProtocol and names it.
func TestConnProtocolViolations(t *testing.T) {
	raw := func(magic string, v uint8, typ Type, n uint32, payload string) []byte {
		return append(header(magic, v, typ, n), payload...)
	}
	result := `{"id":"1","output":1}`
	for _, c := range []struct {
		name string
		out  []byte
		want string
	}{
		{"bad magic", raw("XX", 1, TypeResult, uint32(len(result)), result), "bad magic"},
		{"bad version", raw("CZ", 9, TypeResult, uint32(len(result)), result), "version 9"},
		{"over-long", raw("CZ", 1, TypeResult, 0xffffffff, ""), "exceeds the limit"},
		{"over-long log", raw("CZ", 1, TypeLog, MaxLogFrame+1, ""), "log frame of 65537 bytes exceeds"},
		{"unknown type", raw("CZ", 1, 42, uint32(len(result)), result), "unknown message type 42"},
		{"wrong id", raw("CZ", 1, TypeResult, uint32(len(`{"id":"2","output":1}`)), `{"id":"2","output":1}`), `invocation "2", want "1"`},
		{"wrong id in error", raw("CZ", 1, TypeError, uint32(len(`{"id":"2","type":"E","message":"m"}`)), `{"id":"2","type":"E","message":"m"}`), `invocation "2", want "1"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			d, a := socketpair(t)
			go func() {
				if _, err := ReadFrame(a); err == nil {
					a.Write(c.out)
				}
			}()
			_, err := NewConn(d).Invoke(context.Background(), Invoke{ID: "1"})
			if !errors.Is(err, errdefs.ErrProtocol) || !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want a protocol error naming %q", err, c.want)
			}
		})
	}
}
