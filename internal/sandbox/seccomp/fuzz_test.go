package seccomp

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
	"github.com/catalyzer/catalyzer/internal/sandbox/initwire"
)

// FuzzCompile feeds profile JSON and a Trace list into Compile. Compile must
// never panic; every program it returns must pass Validate and decide like
// the reference evaluator on inputs derived from the fuzz data.
func FuzzCompile(f *testing.F) {
	def, err := DefaultProfile(nil)
	if err != nil {
		f.Fatal(err)
	}
	defJSON, err := json.Marshal(def)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(defJSON, "keyctl,clone", []byte{0, 0, 0, 56, 0, 0, 0, 16})
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ALLOW"}`), "", []byte{})
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_KILL_PROCESS","syscalls":[{"names":["read","write"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":3,"op":"SCMP_CMP_LE"},{"index":0,"value":1,"op":"SCMP_CMP_GT"}]}]}`), "read", []byte{0, 0, 0, 0, 0, 0, 0, 2})
	f.Add([]byte(`{"defaultAction":"SCMP_ACT_ERRNO","defaultErrnoRet":38,"syscalls":[{"names":["getpid"],"action":"SCMP_ACT_TRACE","errnoRet":5,"args":[{"index":5,"value":18446744073709551615,"valueTwo":4294967296,"op":"SCMP_CMP_MASKED_EQ"}]}]}`), "getpid", []byte{0, 0, 0, 39, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, profile []byte, trace string, input []byte) {
		var p specs.LinuxSeccomp
		if err := json.Unmarshal(profile, &p); err != nil {
			return
		}
		var opts Options
		if trace != "" {
			opts.Trace = strings.Split(trace, ",")
		}
		prog, err := Compile(&p, opts)
		if err != nil {
			return
		}
		if err := Validate(prog); err != nil {
			t.Fatalf("Compile returned an invalid program: %v", err)
		}
		// Inputs: the syscall numbers the profile names, plus one from the
		// fuzz data, with argument values from the fuzz data and the
		// profile's own constants.
		var nrs []int32
		for _, r := range p.Syscalls {
			for _, n := range r.Names {
				if nr, ok := SyscallNumber(n); ok {
					nrs = append(nrs, int32(nr))
				}
			}
		}
		var vals []uint64
		for len(input) >= 8 {
			vals = append(vals, binary.BigEndian.Uint64(input))
			input = input[8:]
		}
		if len(vals) > 0 {
			nrs = append(nrs, int32(vals[0]))
		}
		for _, r := range p.Syscalls {
			for _, a := range r.Args {
				vals = append(vals, a.Value, a.Value+1, a.Value-1, a.ValueTwo)
			}
		}
		vals = append(vals, 0)
		if len(nrs) > 64 {
			nrs = nrs[:64]
		}
		if len(vals) > 32 {
			vals = vals[:32]
		}
		for _, nr := range append(nrs, -1, 500) {
			for i, v := range vals {
				d := Data{Nr: nr, Arch: unix.AUDIT_ARCH_X86_64}
				for j := range d.Args {
					d.Args[j] = vals[(i+j)%len(vals)]
				}
				d.Args[i%6] = v
				got, err := Run(prog, d)
				if err != nil {
					t.Fatal(err)
				}
				if want := reference(&p, opts, d); got != want {
					t.Fatalf("nr %d args %#x: program says %#x, reference %#x", nr, d.Args, got, want)
				}
			}
		}
	})
}

// checkValidateRun is FuzzValidate's body: what Validate accepts, Run
// evaluates to a return value on any input (it cannot fall off the end,
// read outside seccomp_data or loop); what it refuses, Run refuses too.
func checkValidateRun(t *testing.T, prog []unix.SockFilter, d Data) {
	verr := Validate(prog)
	_, rerr := Run(prog, d)
	switch {
	case verr == nil && rerr != nil:
		t.Fatalf("Validate accepts %v, Run fails: %v", prog, rerr)
	case verr != nil && !errors.Is(verr, errdefs.ErrInvalid):
		t.Fatalf("Validate: %v does not wrap ErrInvalid", verr)
	case verr != nil && rerr == nil:
		t.Fatalf("Validate refuses %v (%v), Run accepts", prog, verr)
	}
}

// FuzzValidate feeds arbitrary instructions to Validate and Run (the
// compiler only ever makes well-formed ones; FuzzCompile covers those).
func FuzzValidate(f *testing.F) {
	def, err := DefaultProgram(Options{})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(initwire.EncodeFilter(def[:min(len(def), 64)]), int32(0), uint64(0))
	f.Add([]byte{0x20, 0, 0, 0, 4, 0, 0, 0, 0x06, 0, 0, 0, 0, 0, 0xff, 0x7f}, int32(1), uint64(2))
	f.Add([]byte{0x34, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0}, int32(0), uint64(0)) // A /= 0
	f.Add([]byte{0x3c, 0, 0, 0, 0, 0, 0, 0, 0x16, 0, 0, 0, 0, 0, 0, 0}, int32(0), uint64(0)) // A /= X, X 0
	f.Fuzz(func(t *testing.T, b []byte, nr int32, arg uint64) {
		d := Data{Nr: nr, Arch: unix.AUDIT_ARCH_X86_64, InstructionPointer: arg}
		for i := range d.Args {
			d.Args[i] = arg << i
		}
		prog, _ := initwire.DecodeFilter(b[:len(b)/8*8])
		checkValidateRun(t, prog, d)
	})
}
