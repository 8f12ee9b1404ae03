package seccomp

import (
	"errors"
	"math/rand/v2"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

const (
	sigchld  = uint64(unix.SIGCHLD)
	retAllow = unix.SECCOMP_RET_ALLOW
	retEPERM = unix.SECCOMP_RET_ERRNO | uint32(unix.EPERM)
)

func nrOf(t testing.TB, name string) int32 {
	t.Helper()
	nr, ok := SyscallNumber(name)
	if !ok {
		t.Fatalf("syscall %q not in the table", name)
	}
	return int32(nr)
}

func call(t testing.TB, name string, args ...uint64) Data {
	d := Data{Nr: nrOf(t, name), Arch: unix.AUDIT_ARCH_X86_64}
	copy(d.Args[:], args)
	return d
}

func mustRun(t testing.TB, prog []unix.SockFilter, d Data) uint32 {
	t.Helper()
	r, err := Run(prog, d)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// reference evaluates p for d the way the package documentation says,
// independently of the generated code.
func reference(p *specs.LinuxSeccomp, opts Options, d Data) uint32 {
	if d.Arch != unix.AUDIT_ARCH_X86_64 {
		return BadArchAction
	}
	nr := uint32(d.Nr)
	if nr >= x32Bit && nr != 0xffffffff {
		return BadArchAction
	}
	holds := func(a specs.LinuxSeccompArg) bool {
		v := d.Args[a.Index]
		switch a.Op {
		case specs.OpEqualTo:
			return v == a.Value
		case specs.OpNotEqual:
			return v != a.Value
		case specs.OpLessThan:
			return v < a.Value
		case specs.OpLessEqual:
			return v <= a.Value
		case specs.OpGreaterThan:
			return v > a.Value
		case specs.OpGreaterEqual:
			return v >= a.Value
		case specs.OpMaskedEqual:
			return v&a.Value == a.ValueTwo
		}
		panic("op")
	}
	def, _ := action(p.DefaultAction, p.DefaultErrnoRet)
	result, haveCond := uint32(0), false
	uncond, haveUncond := uint32(0), false
	for _, r := range p.Syscalls {
		if !slices.ContainsFunc(r.Names, func(n string) bool { x, ok := SyscallNumber(n); return ok && x == nr }) {
			continue
		}
		act, _ := action(r.Action, r.ErrnoRet)
		if len(r.Args) == 0 {
			if !haveUncond {
				uncond, haveUncond = act, true
			}
			continue
		}
		seen, split := map[uint]bool{}, false
		for _, a := range r.Args {
			split = split || seen[a.Index]
			seen[a.Index] = true
		}
		match := !split
		for _, a := range r.Args {
			if split {
				match = match || holds(a)
			} else {
				match = match && holds(a)
			}
		}
		if match && !haveCond {
			result, haveCond = act, true
		}
	}
	out := def
	switch {
	case haveCond:
		out = result
	case haveUncond:
		out = uncond
	}
	for _, n := range opts.Trace {
		if x, _ := SyscallNumber(n); x == nr {
			return traced(out)
		}
	}
	return out
}

func TestDefaultProgram(t *testing.T) {
	prog, err := DefaultProgram(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Validate(prog); err != nil {
		t.Fatal(err)
	}
	t.Logf("default program: %d instructions", len(prog))
	for _, tc := range []struct {
		what string
		d    Data
		want uint32
	}{
		{"getpid", call(t, "getpid"), retAllow},
		{"write", call(t, "write", 1, 0, 5), retAllow},
		{"read", call(t, "read"), retAllow},
		{"exit_group", call(t, "exit_group"), retAllow},
		{"mount", call(t, "mount"), retEPERM},
		{"keyctl", call(t, "keyctl"), retEPERM},
		{"unshare", call(t, "unshare", unix.CLONE_NEWNS), retEPERM},
		{"clone plain", call(t, "clone", sigchld), retAllow},
		{"clone thread", call(t, "clone", unix.CLONE_VM|unix.CLONE_THREAD|unix.CLONE_SIGHAND), retAllow},
		{"clone NEWUSER", call(t, "clone", unix.CLONE_NEWUSER|sigchld), retEPERM},
		{"clone NEWNS high bits", call(t, "clone", 1<<40|unix.CLONE_NEWNS), retEPERM},
		{"clone3", call(t, "clone3"), unix.SECCOMP_RET_ERRNO | uint32(unix.ENOSYS)},
		{"personality 0", call(t, "personality", 0), retAllow},
		{"personality 0xffffffff", call(t, "personality", 0xffffffff), retAllow},
		{"personality 1", call(t, "personality", 1), retEPERM},
		{"personality 1<<32", call(t, "personality", 1<<32), retEPERM},
		{"socket AF_INET", call(t, "socket", unix.AF_INET), retAllow},
		{"socket AF_UNIX", call(t, "socket", unix.AF_UNIX), retAllow},
		{"socket 1<<32|AF_INET", call(t, "socket", 1<<32|unix.AF_INET), retEPERM},
		{"nr -1", Data{Nr: -1, Arch: unix.AUDIT_ARCH_X86_64}, retEPERM},
		{"nr 9999", Data{Nr: 9999, Arch: unix.AUDIT_ARCH_X86_64}, retEPERM},
		{"x32 getpid", Data{Nr: x32Bit | nrOf(t, "getpid"), Arch: unix.AUDIT_ARCH_X86_64}, BadArchAction},
		{"i386 getpid", Data{Nr: 20, Arch: unix.AUDIT_ARCH_I386}, BadArchAction},
		{"i386 nr 0", Data{Nr: 0, Arch: unix.AUDIT_ARCH_I386}, BadArchAction},
	} {
		if got := mustRun(t, prog, tc.d); got != tc.want {
			t.Errorf("%s: got %#x, want %#x", tc.what, got, tc.want)
		}
	}
	if BadArchAction != unix.SECCOMP_RET_KILL_PROCESS && BadArchAction&unix.SECCOMP_RET_ACTION_FULL != unix.SECCOMP_RET_ERRNO {
		t.Fatalf("a foreign arch must be killed or denied, got %#x", BadArchAction)
	}
}

func TestDefaultProgramCaps(t *testing.T) {
	prog, err := DefaultProgram(Options{Caps: []string{"CAP_SYS_ADMIN"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []Data{call(t, "clone", unix.CLONE_NEWUSER), call(t, "unshare", unix.CLONE_NEWNS), call(t, "mount"), call(t, "clone3")} {
		if got := mustRun(t, prog, d); got != retAllow {
			t.Errorf("with CAP_SYS_ADMIN nr %d: got %#x, want allow", d.Nr, got)
		}
	}
	if got := mustRun(t, prog, call(t, "keyctl")); got != retEPERM {
		t.Errorf("keyctl with CAP_SYS_ADMIN: got %#x, want EPERM", got)
	}
}

// TestDefaultMatchesReference compares the compiled default profile (under
// several capability sets) with the reference evaluator over every syscall
// number and boundary argument values.
func TestDefaultMatchesReference(t *testing.T) {
	argVals := []uint64{0, 1, 8, 0x20000, 0x20008, 0xffffffff, 1 << 32, unix.AF_INET, unix.AF_VSOCK, 45, 46,
		unix.CLONE_NEWUSER, unix.CLONE_NEWCGROUP | sigchld, ^uint64(0)}
	for _, caps := range [][]string{nil, {"CAP_SYS_ADMIN"}, {"CAP_SYS_PTRACE", "CAP_SYS_TIME", "CAP_BPF", "CAP_PERFMON", "CAP_SYS_NICE"}} {
		p, err := DefaultProfile(caps)
		if err != nil {
			t.Fatal(err)
		}
		opts := Options{Caps: caps, Trace: []string{"ptrace", "clone"}}
		prog, err := Compile(p, opts)
		if err != nil {
			t.Fatal(err)
		}
		for nr := int32(-1); nr < 520; nr++ {
			for _, v := range argVals {
				d := Data{Nr: nr, Arch: unix.AUDIT_ARCH_X86_64, Args: [6]uint64{v, v, v, v, v, v}}
				if got, want := mustRun(t, prog, d), reference(p, opts, d); got != want {
					t.Fatalf("caps %v nr %d arg %#x: got %#x, want %#x", caps, nr, v, got, want)
				}
			}
		}
	}
}

func TestUnknownNames(t *testing.T) {
	// Every name of the default profile that the x86_64 table lacks must be
	// a 32-bit-only or other-arch syscall. A new name here means the table
	// (golang.org/x/sys) is behind the profile: regenerate or explain.
	want := []string{"_llseek", "_newselect", "chown32", "clock_adjtime64", "clock_getres_time64",
		"clock_gettime64", "clock_nanosleep_time64", "fadvise64_64", "fchown32", "fcntl64", "fstat64",
		"fstatat64", "fstatfs64", "ftruncate64", "futex_time64", "getegid32", "geteuid32", "getgid32",
		"getgroups32", "getresgid32", "getresuid32", "getuid32", "io_pgetevents_time64", "ipc", "lchown32",
		"lstat64", "mmap2", "mq_timedreceive_time64", "mq_timedsend_time64", "ppoll_time64",
		"pselect6_time64", "recv", "recvmmsg_time64", "riscv_hwprobe", "rt_sigtimedwait_time64",
		"sched_rr_get_interval_time64", "semtimedop_time64", "send", "sendfile64", "setfsgid32",
		"setfsuid32", "setgid32", "setgroups32", "setregid32", "setresgid32", "setresuid32", "setreuid32",
		"setuid32", "sigprocmask", "sigreturn", "socketcall", "stat64", "statfs64", "timer_gettime64",
		"timer_settime64", "timerfd_gettime64", "timerfd_settime64", "truncate64", "ugetrlimit",
		"utimensat_time64", "waitpid"}
	p, err := DefaultProfile(nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := UnknownNames(p); !slices.Equal(got, want) {
		t.Errorf("unknown names of the default profile changed:\n got %q\nwant %q", got, want)
	}
	for _, n := range []string{"getpid", "clone3", "openat2", "mseal", "futex_waitv", "io_uring_setup"} {
		if _, ok := SyscallNumber(n); !ok {
			t.Errorf("%s missing from the x86_64 table", n)
		}
	}
	if nr, _ := SyscallNumber("getpid"); nr != 39 {
		t.Errorf("getpid = %d, want 39", nr)
	}
}

func TestTrace(t *testing.T) {
	prog, err := DefaultProgram(Options{Trace: []string{"keyctl", "clone", "mount", "kexec_load"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    Data
		want uint32
	}{
		{call(t, "keyctl"), unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{call(t, "mount"), unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{call(t, "clone", unix.CLONE_NEWUSER), unix.SECCOMP_RET_TRACE | uint32(unix.EPERM)},
		{call(t, "clone", sigchld), retAllow},
		{call(t, "getpid"), retAllow},
		{call(t, "add_key"), retEPERM},
	} {
		if got := mustRun(t, prog, tc.d); got != tc.want {
			t.Errorf("nr %d: got %#x, want %#x", tc.d.Nr, got, tc.want)
		}
	}
	_, err = DefaultProgram(Options{Trace: []string{"kyectl"}})
	if !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("typo in Trace: got %v, want ErrInvalid", err)
	}
}

// TestOperators checks every runtime-spec operator against Go's own
// comparison on values around the 32-bit half boundaries.
func TestOperators(t *testing.T) {
	vals := []uint64{0, 1, 2, 0x7fffffff, 0x80000000, 0xfffffffe, 0xffffffff, 1 << 32, 1<<32 | 1, 1<<32 | 0xffffffff,
		2 << 32, 0x8000000000000000, ^uint64(0) - 1, ^uint64(0)}
	ops := []specs.LinuxSeccompOperator{specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		vals = append(vals, rng.Uint64())
	}
	for _, op := range ops {
		for _, v := range vals {
			for idx := uint(0); idx < 6; idx += 5 {
				p := &specs.LinuxSeccomp{
					DefaultAction: specs.ActErrno,
					Syscalls: []specs.LinuxSyscall{{
						Names: []string{"getpid"}, Action: specs.ActAllow,
						Args: []specs.LinuxSeccompArg{{Index: idx, Value: v, ValueTwo: v & 0xff0000ff00ff, Op: op}},
					}},
				}
				prog, err := Compile(p, Options{})
				if err != nil {
					t.Fatal(err)
				}
				for _, x := range vals {
					d := call(t, "getpid")
					d.Args[idx] = x
					if got, want := mustRun(t, prog, d), reference(p, Options{}, d); got != want {
						t.Fatalf("%s arg%d=%#x value %#x: got %#x, want %#x", op, idx, x, v, got, want)
					}
				}
			}
		}
	}
}

func TestRulesAndOr(t *testing.T) {
	p := &specs.LinuxSeccomp{
		DefaultAction: specs.ActKillProcess,
		Syscalls: []specs.LinuxSyscall{
			// distinct indexes: AND
			{Names: []string{"read"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 3, Op: specs.OpEqualTo}, {Index: 2, Value: 100, Op: specs.OpLessEqual}}},
			// same index twice: OR (runc)
			{Names: []string{"write"}, Action: specs.ActAllow, Args: []specs.LinuxSeccompArg{
				{Index: 0, Value: 1, Op: specs.OpEqualTo}, {Index: 0, Value: 2, Op: specs.OpEqualTo}}},
			{Names: []string{"write"}, Action: specs.ActTrap},
			{Names: []string{"close", "no_such_syscall"}, Action: specs.ActLog},
			{Names: []string{"getppid"}, Action: specs.ActTrace, ErrnoRet: ptr(uint(7))},
			{Names: []string{"gettid"}, Action: specs.ActKill},
		},
	}
	prog, err := Compile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		d    Data
		want uint32
	}{
		{call(t, "read", 3, 0, 100), retAllow},
		{call(t, "read", 3, 0, 101), unix.SECCOMP_RET_KILL_PROCESS},
		{call(t, "read", 4, 0, 1), unix.SECCOMP_RET_KILL_PROCESS},
		{call(t, "write", 1), retAllow},
		{call(t, "write", 2), retAllow},
		{call(t, "write", 3), unix.SECCOMP_RET_TRAP},
		{call(t, "close"), unix.SECCOMP_RET_LOG},
		{call(t, "getppid"), unix.SECCOMP_RET_TRACE | 7},
		{call(t, "gettid"), unix.SECCOMP_RET_KILL_THREAD},
		{call(t, "getpid"), unix.SECCOMP_RET_KILL_PROCESS},
	} {
		if got := mustRun(t, prog, tc.d); got != tc.want {
			t.Errorf("nr %d args %v: got %#x, want %#x", tc.d.Nr, tc.d.Args, got, tc.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestLongJumps builds programs whose jumps exceed 255 instructions and
// checks they still decide like the reference, and that an oversized
// program is refused.
func TestLongJumps(t *testing.T) {
	build := func(n int) *specs.LinuxSeccomp {
		p := &specs.LinuxSeccomp{DefaultAction: specs.ActErrno}
		for i := range n {
			p.Syscalls = append(p.Syscalls, specs.LinuxSyscall{
				Names: []string{"read", "getpid"}, Action: specs.ActAllow,
				Args: []specs.LinuxSeccompArg{{Index: 1, Value: uint64(i) * 3, Op: specs.OpEqualTo}},
			})
		}
		p.Syscalls = append(p.Syscalls,
			specs.LinuxSyscall{Names: []string{"write"}, Action: specs.ActAllow},
			specs.LinuxSyscall{Names: []string{"getpid"}, Action: specs.ActTrap})
		return p
	}
	p := build(150)
	prog, err := Compile(p, Options{})
	if err != nil {
		t.Fatal(err)
	}
	long := false
	for _, ins := range prog {
		long = long || (ins.Code == bpfJMP|bpfJA && ins.K > 255)
	}
	if !long {
		t.Fatalf("test profile produced no long jump (%d instructions)", len(prog))
	}
	for _, name := range []string{"read", "getpid", "write", "close"} {
		for v := uint64(0); v < 460; v++ {
			d := call(t, name, 0, v)
			if got, want := mustRun(t, prog, d), reference(p, Options{}, d); got != want {
				t.Fatalf("%s arg1=%d: got %#x, want %#x", name, v, got, want)
			}
		}
	}
	if _, err := Compile(build(1000), Options{}); !errors.Is(err, errdefs.ErrInvalid) {
		t.Fatalf("oversized program: got %v, want ErrInvalid", err)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tc := range []struct {
		what string
		p    *specs.LinuxSeccomp
		want error
	}{
		{"nil", nil, errdefs.ErrInvalid},
		{"bad default", &specs.LinuxSeccomp{DefaultAction: "SCMP_ACT_MAYBE"}, errdefs.ErrInvalid},
		{"notify", &specs.LinuxSeccomp{DefaultAction: specs.ActNotify}, errdefs.ErrNotSupported},
		{"no x86_64", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{specs.ArchAARCH64}}, errdefs.ErrNotSupported},
		{"flags", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{specs.LinuxSeccompFlagLog}}, errdefs.ErrNotSupported},
		{"index", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}}}}}, errdefs.ErrInvalid},
		{"op", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActErrno,
			Args: []specs.LinuxSeccompArg{{Index: 0, Op: "SCMP_CMP_BETWEEN"}}}}}, errdefs.ErrInvalid},
		{"errno range", &specs.LinuxSeccomp{DefaultAction: specs.ActErrno, DefaultErrnoRet: ptr(uint(70000))}, errdefs.ErrInvalid},
		{"errno on allow", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, DefaultErrnoRet: ptr(uint(1))}, errdefs.ErrInvalid},
		{"conflict", &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{
			{Names: []string{"read"}, Action: specs.ActErrno}, {Names: []string{"read"}, Action: specs.ActAllow}}}, errdefs.ErrInvalid},
	} {
		if _, err := Compile(tc.p, Options{}); !errors.Is(err, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.what, err, tc.want)
		}
	}
}

func TestValidate(t *testing.T) {
	ret := unix.SockFilter{Code: bpfRET | bpfK, K: retAllow}
	for _, tc := range []struct {
		what string
		prog []unix.SockFilter
	}{
		{"empty", nil},
		{"too long", make([]unix.SockFilter, maxInsns+1)},
		{"no return", []unix.SockFilter{{Code: bpfLD | bpfW | bpfABS}}},
		{"load out of seccomp_data", []unix.SockFilter{{Code: bpfLD | bpfW | bpfABS, K: 64}, ret}},
		{"unaligned load", []unix.SockFilter{{Code: bpfLD | bpfW | bpfABS, K: 2}, ret}},
		{"jump out", []unix.SockFilter{{Code: bpfJMP | bpfJEQ | bpfK, Jt: 1}, ret}},
		{"ja out", []unix.SockFilter{{Code: bpfJMP | bpfJA, K: 1}, ret}},
		{"div zero", []unix.SockFilter{{Code: bpfALU | bpfDIV | bpfK}, ret}},
		{"store", []unix.SockFilter{{Code: 0x02}, ret}},
	} {
		if err := Validate(tc.prog); !errors.Is(err, errdefs.ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", tc.what, err)
		}
	}
	if err := Validate([]unix.SockFilter{ret}); err != nil {
		t.Errorf("single return: %v", err)
	}
}
