package agent

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

func header(magic string, v uint8, t Type, n uint32) []byte {
	b := append([]byte(magic), v, byte(t), 0, 0, 0, 0)
	binary.BigEndian.PutUint32(b[4:], n)
	return b
}

func frameBytes(v uint8, t Type, payload string) []byte {
	return append(header("CZ", v, t, uint32(len(payload))), payload...)
}

// checkReadFrame is the body shared by FuzzReadFrame and the fixed-input
// table: ReadFrame must not panic or over-allocate, a frame it accepts must
// be well formed and re-encode to the same bytes, and decoding its payload
// must not panic.
func checkReadFrame(t *testing.T, in []byte) (Frame, error) {
	f, err := ReadFrame(bytes.NewReader(in))
	if err != nil {
		if f.Payload != nil {
			t.Fatalf("error %v with a payload", err)
		}
		return f, err
	}
	if f.Version != ProtocolVersion || !f.Type.Valid() || len(f.Payload) > MaxFrame {
		t.Fatalf("accepted a bad frame: %+v", f)
	}
	var buf bytes.Buffer
	if err := WriteFrame(&buf, f); err != nil {
		t.Fatalf("re-encode: %v", err)
	}
	if !bytes.Equal(buf.Bytes(), in[:HeaderSize+len(f.Payload)]) {
		t.Fatalf("re-encoded frame differs")
	}
	m, derr := DecodeAny(f)
	if derr == nil && m == nil {
		t.Fatalf("DecodeAny returned neither message nor error")
	}
	if derr != nil && !errors.Is(derr, ErrProtocol) {
		t.Fatalf("decode error is not ErrProtocol: %v", derr)
	}
	return f, nil
}

var frameCases = []struct {
	name    string
	in      []byte
	wantErr string // substring; "" = success
}{
	{"init", frameBytes(1, TypeInit, `{"version":1,"function":"f","runtime":"python","handler":"main.handler","code_dir":"/var/task","output_limit":10}`), ""},
	{"ready", frameBytes(1, TypeReady, `{"version":1,"pid":1,"ready_ns":5}`), ""},
	{"invoke", frameBytes(1, TypeInvoke, `{"id":"a","event":{"x":[1,2]},"deadline_ms":100}`), ""},
	{"result", frameBytes(1, TypeResult, `{"id":"a","output":null,"entry_ns":1,"exit_ns":2,"stdout":"","stderr":"","truncated":false}`), ""},
	{"error", frameBytes(1, TypeError, `{"id":"a","type":"ValueError","message":"m"}`), ""},
	{"log", frameBytes(1, TypeLog, `{"message":"m"}`), ""},
	{"forked", frameBytes(1, TypeForked, `{"version":1}`), ""},
	{"payload not object", frameBytes(1, TypeInit, `[1]`), ""},
	{"payload garbage", frameBytes(1, TypeResult, `{"output":`), ""},
	{"empty payload", frameBytes(1, TypeLog, ``), ""},
	{"empty input", nil, "EOF"},
	{"short header", []byte("CZ\x01"), "unexpected EOF"},
	{"bad magic", frameBytes(1, TypeInit, `{}`)[1:], "bad magic"},
	{"version 2", frameBytes(2, TypeInit, `{}`), "version 2, this side speaks version 1"},
	{"version 0", frameBytes(0, TypeInit, `{}`), "version 0"},
	{"type 0", frameBytes(1, 0, `{}`), "unknown message type 0"},
	{"type 8", frameBytes(1, 8, `{}`), "unknown message type 8"},
	{"too large", header("CZ", 1, TypeInvoke, MaxFrame+1), "exceeds the limit"},
	{"huge length", header("CZ", 1, TypeInvoke, 0xffffffff), "exceeds the limit"},
	{"max length cut short", header("CZ", 1, TypeInvoke, MaxFrame), "unexpected EOF"},
	// Per-type limits: a log frame (the one an instance sends as often as
	// it likes) may not make the daemon allocate 8 MiB.
	{"log too large", header("CZ", 1, TypeLog, MaxLogFrame+1), "log frame of 65537 bytes exceeds the limit of 65536"},
	{"log 7 MiB", header("CZ", 1, TypeLog, 7<<20), "exceeds the limit"},
	{"ready too large", header("CZ", 1, TypeReady, MaxSmallFrame+1), "exceeds the limit"},
	{"log max length cut short", header("CZ", 1, TypeLog, MaxLogFrame), "unexpected EOF"},
	{"payload cut short", frameBytes(1, TypeLog, `{"message":"m"}`)[:12], "unexpected EOF"},
}

func TestReadFrame(t *testing.T) {
	for _, tc := range frameCases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := checkReadFrame(t, tc.in)
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("ReadFrame: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ReadFrame error = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestProtocolErrorIs(t *testing.T) {
	_, err := ReadFrame(bytes.NewReader(frameBytes(2, TypeInit, `{}`)))
	if !errors.Is(err, ErrProtocol) || !errors.Is(err, errdefs.ErrFunction) {
		t.Fatalf("version error %v is not ErrProtocol and ErrFunction", err)
	}
}

func TestDecodeMessages(t *testing.T) {
	f := frameBytes(1, TypeInvoke, `{"id":"a","event":{"x":[1,2]},"deadline_ms":100}`)
	fr, err := ReadFrame(bytes.NewReader(f))
	if err != nil {
		t.Fatal(err)
	}
	m, err := DecodeAny(fr)
	if err != nil {
		t.Fatal(err)
	}
	inv := m.(*Invoke)
	if inv.ID != "a" || string(inv.Event) != `{"x":[1,2]}` || inv.DeadlineMS != 100 {
		t.Fatalf("decoded %+v", inv)
	}
	var r Result
	if err := Decode(fr, TypeResult, &r); err == nil || !errors.Is(err, ErrProtocol) {
		t.Fatalf("Decode with the wrong type: %v", err)
	}
}

func TestWriteFrameTooLarge(t *testing.T) {
	err := WriteFrame(io.Discard, Frame{Type: TypeResult, Payload: make([]byte, MaxFrame+1)})
	if !errors.Is(err, errdefs.ErrTooLarge) {
		t.Fatalf("WriteFrame of MaxFrame+1: %v", err)
	}
	if err := WriteFrame(io.Discard, Frame{Type: TypeLog, Payload: make([]byte, MaxLogFrame+1)}); !errors.Is(err, errdefs.ErrTooLarge) {
		t.Fatalf("WriteFrame of a log of MaxLogFrame+1: %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	for _, tc := range frameCases {
		f.Add(tc.in)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		checkReadFrame(t, in)
	})
}
