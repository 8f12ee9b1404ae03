package seccomp

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	mobyseccomp "github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Options choose how the moby profile is resolved.
type Options struct {
	// Caps are the capability names ("CAP_CHOWN", ...) the process will
	// hold; they resolve the profile's includes/excludes by capability.
	Caps []string
	// Trace lists syscall names that must return SECCOMP_RET_TRACE instead
	// of the profile's denial (a ptrace tracer may then allow them). Empty
	// for normal use. Every name must be known to SyscallNumber.
	Trace []string
}

// seccomp_data offsets.
const (
	offNr   = 0
	offArch = 4
	offArgs = 16

	// x32Bit is __X32_SYSCALL_BIT: an x32 syscall arrives with
	// AUDIT_ARCH_X86_64 and this bit set in nr.
	x32Bit = 0x40000000

	// BadArchAction is what the program returns for a system call made
	// through any ABI other than native x86_64 (i386 via int 0x80, x32):
	// the whole process is killed, whatever the profile says.
	BadArchAction = unix.SECCOMP_RET_KILL_PROCESS
)

// DefaultProgram resolves moby's DefaultProfile for amd64, the running
// kernel and opts.Caps, and compiles it with Compile.
func DefaultProgram(opts Options) ([]unix.SockFilter, error) {
	p, err := DefaultProfile(opts.Caps)
	if err != nil {
		return nil, err
	}
	return Compile(p, opts)
}

// DefaultProfile returns moby's default profile resolved for amd64, the
// running kernel and a process holding caps.
func DefaultProfile(caps []string) (*specs.LinuxSeccomp, error) {
	rs := &specs.Spec{Process: &specs.Process{Capabilities: &specs.LinuxCapabilities{
		Bounding: slices.Clone(caps),
	}}}
	p, err := mobyseccomp.GetDefaultProfile(rs)
	if err != nil {
		return nil, fmt.Errorf("resolve default seccomp profile: %w", err)
	}
	if p == nil {
		return nil, fmt.Errorf("resolve default seccomp profile: empty profile: %w", errdefs.ErrInvalid)
	}
	return p, nil
}

// UnknownNames returns, sorted and without duplicates, the syscall names of
// p that SyscallNumber does not know; Compile skips them.
func UnknownNames(p *specs.LinuxSeccomp) []string {
	var out []string
	for _, r := range p.Syscalls {
		for _, n := range r.Names {
			if _, ok := SyscallNumber(n); !ok {
				out = append(out, n)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// cond is one 64-bit argument condition.
type cond struct {
	index  uint
	op     specs.LinuxSeccompOperator
	value  uint64
	value2 uint64
}

// rule is one conditional rule of one syscall: all conds must hold.
type rule struct {
	conds  []cond
	action uint32
}

// body is what the program does for one syscall number: the conditional
// rules in profile order (first match wins), then fallback.
type body struct {
	rules    []rule
	fallback uint32
}

func (b *body) key() string {
	var s strings.Builder
	for _, r := range b.rules {
		fmt.Fprintf(&s, "%x:", r.action)
		for _, c := range r.conds {
			fmt.Fprintf(&s, "%d,%s,%x,%x;", c.index, c.op, c.value, c.value2)
		}
		s.WriteByte('|')
	}
	fmt.Fprintf(&s, "%x", b.fallback)
	return s.String()
}

// action returns the SECCOMP_RET_* value of a runtime-spec action.
func action(a specs.LinuxSeccompAction, errnoRet *uint) (uint32, error) {
	data := func(def uint) (uint32, error) {
		v := def
		if errnoRet != nil {
			v = *errnoRet
		}
		if v > unix.SECCOMP_RET_DATA {
			return 0, fmt.Errorf("errnoRet %d does not fit 16 bits: %w", v, errdefs.ErrInvalid)
		}
		return uint32(v), nil
	}
	noData := func(r uint32) (uint32, error) {
		if errnoRet != nil {
			return 0, fmt.Errorf("errnoRet given for action %s: %w", a, errdefs.ErrInvalid)
		}
		return r, nil
	}
	switch a {
	case specs.ActErrno:
		d, err := data(uint(unix.EPERM))
		return unix.SECCOMP_RET_ERRNO | d, err
	case specs.ActTrace:
		d, err := data(0)
		return unix.SECCOMP_RET_TRACE | d, err
	case specs.ActAllow:
		return noData(unix.SECCOMP_RET_ALLOW)
	case specs.ActKill, specs.ActKillThread:
		return noData(unix.SECCOMP_RET_KILL_THREAD)
	case specs.ActKillProcess:
		return noData(unix.SECCOMP_RET_KILL_PROCESS)
	case specs.ActTrap:
		return noData(unix.SECCOMP_RET_TRAP)
	case specs.ActLog:
		return noData(unix.SECCOMP_RET_LOG)
	case specs.ActNotify:
		return 0, fmt.Errorf("action %s needs a listener: %w", a, errdefs.ErrNotSupported)
	}
	return 0, fmt.Errorf("unknown seccomp action %q: %w", a, errdefs.ErrInvalid)
}

// traced turns a denial into SECCOMP_RET_TRACE; the trace data (what the
// tracer reads with PTRACE_GETEVENTMSG) is the errno the profile would have
// returned, or 0 where it would have killed or trapped.
func traced(r uint32) uint32 {
	switch r & unix.SECCOMP_RET_ACTION_FULL {
	case unix.SECCOMP_RET_ALLOW, unix.SECCOMP_RET_LOG, unix.SECCOMP_RET_TRACE:
		return r
	case unix.SECCOMP_RET_ERRNO:
		return unix.SECCOMP_RET_TRACE | r&unix.SECCOMP_RET_DATA
	}
	return unix.SECCOMP_RET_TRACE
}

func validOp(op specs.LinuxSeccompOperator) bool {
	switch op {
	case specs.OpNotEqual, specs.OpLessThan, specs.OpLessEqual, specs.OpEqualTo,
		specs.OpGreaterEqual, specs.OpGreaterThan, specs.OpMaskedEqual:
		return true
	}
	return false
}

// Compile turns a runtime-spec seccomp profile into a classic BPF program
// for x86_64. See the package documentation for the semantics.
func Compile(p *specs.LinuxSeccomp, opts Options) ([]unix.SockFilter, error) {
	if err := supported(p); err != nil {
		return nil, fmt.Errorf("compile seccomp: %w", err)
	}
	def, err := action(p.DefaultAction, p.DefaultErrnoRet)
	if err != nil {
		return nil, fmt.Errorf("compile seccomp: default action: %w", err)
	}
	trace := map[uint32]bool{}
	for _, n := range opts.Trace {
		nr, ok := SyscallNumber(n)
		if !ok {
			return nil, fmt.Errorf("compile seccomp: trace: unknown syscall %q: %w", n, errdefs.ErrInvalid)
		}
		trace[nr] = true
	}
	bodies, err := collect(p, def)
	if err != nil {
		return nil, fmt.Errorf("compile seccomp: %w", err)
	}
	for nr := range trace {
		if bodies[nr] == nil {
			bodies[nr] = &body{fallback: def}
		}
	}
	for nr, b := range bodies {
		b.simplify(trace[nr])
	}
	return generate(bodies, def)
}

// supported refuses what Compile does not compile: a nil profile, a
// listener, flags, a profile without x86_64.
func supported(p *specs.LinuxSeccomp) error {
	switch {
	case p == nil:
		return fmt.Errorf("nil profile: %w", errdefs.ErrInvalid)
	case p.ListenerPath != "" || len(p.ListenerMetadata) > 0:
		return fmt.Errorf("listenerPath: %w", errdefs.ErrNotSupported)
	case len(p.Flags) > 0:
		return fmt.Errorf("flags %v: %w", p.Flags, errdefs.ErrNotSupported)
	case len(p.Architectures) > 0 && !slices.Contains(p.Architectures, specs.ArchX86_64):
		return fmt.Errorf("profile architectures %v lack %s: %w", p.Architectures, specs.ArchX86_64, errdefs.ErrNotSupported)
	}
	return nil
}

// collect gathers, per syscall number the table knows, the conditional
// rules of p in profile order and the unconditional action (def where p
// names none).
func collect(p *specs.LinuxSeccomp, def uint32) (map[uint32]*body, error) {
	bodies := map[uint32]*body{}
	uncond := map[uint32]bool{}
	for i, sc := range p.Syscalls {
		act, err := action(sc.Action, sc.ErrnoRet)
		if err != nil {
			return nil, fmt.Errorf("rule %d %v: %w", i, sc.Names, err)
		}
		rules, err := rulesOf(sc.Args, act)
		if err != nil {
			return nil, fmt.Errorf("rule %d %v: %w", i, sc.Names, err)
		}
		for _, name := range sc.Names {
			nr, ok := SyscallNumber(name)
			if !ok {
				continue // unknown to this kernel ABI: skipped, as libseccomp does
			}
			b := bodies[nr]
			if b == nil {
				b = &body{fallback: def}
				bodies[nr] = b
			}
			if len(sc.Args) > 0 {
				b.rules = append(b.rules, rules...)
				continue
			}
			if uncond[nr] && b.fallback != act {
				return nil, fmt.Errorf("syscall %s has conflicting actions %#x and %#x: %w",
					name, b.fallback, act, errdefs.ErrInvalid)
			}
			uncond[nr] = true
			b.fallback = act
		}
	}
	return bodies, nil
}

// rulesOf is the conditional rules that one profile rule with args and
// action act makes (none without args). As runc does: conditions on
// distinct arguments are ANDed in one rule; if one argument is named
// twice, each condition becomes a rule of its own (ORed).
func rulesOf(args []specs.LinuxSeccompArg, act uint32) ([]rule, error) {
	var conds []cond
	perIndex := map[uint]int{}
	split := false
	for _, a := range args {
		if a.Index >= 6 {
			return nil, fmt.Errorf("argument index %d (want 0..5): %w", a.Index, errdefs.ErrInvalid)
		}
		if !validOp(a.Op) {
			return nil, fmt.Errorf("unknown operator %q: %w", a.Op, errdefs.ErrInvalid)
		}
		perIndex[a.Index]++
		split = split || perIndex[a.Index] > 1
		conds = append(conds, cond{index: a.Index, op: a.Op, value: a.Value, value2: a.ValueTwo})
	}
	if len(conds) == 0 {
		return nil, nil
	}
	if !split {
		return []rule{{conds: conds, action: act}}, nil
	}
	rules := make([]rule, len(conds))
	for i, c := range conds {
		rules[i] = rule{conds: []cond{c}, action: act}
	}
	return rules, nil
}

// simplify drops b's trailing conditional rules whose action equals the
// fallback (first match wins: they change nothing, and dropping them keeps
// bodies small and shareable), then, for a traced syscall, turns each
// denial into SECCOMP_RET_TRACE.
func (b *body) simplify(trace bool) {
	for n := len(b.rules); n > 0 && b.rules[n-1].action == b.fallback; n-- {
		b.rules = b.rules[:n-1]
	}
	if trace {
		for i := range b.rules {
			b.rules[i].action = traced(b.rules[i].action)
		}
		b.fallback = traced(b.fallback)
	}
}

// interval is a run [lo, hi] of syscall numbers with the same body.
type interval struct {
	lo, hi uint32
	body   *body
}

// generate emits the program of the package doc's shape: the
// architecture checks, the binary search over intervals, then each body
// a leaf jumps to, once.
func generate(bodies map[uint32]*body, def uint32) ([]unix.SockFilter, error) {
	a := &assembler{}
	emitArchCheck(a)
	order, labels := emitDispatch(a, intervals(bodies, def))
	for _, b := range order {
		a.place(labels[b])
		for _, r := range b.rules {
			fail := a.newLabel()
			for _, c := range r.conds {
				emitCond(a, c, fail)
			}
			a.ret(r.action)
			a.place(fail)
		}
		a.ret(b.fallback)
	}
	prog, err := a.assemble()
	if err != nil {
		return nil, fmt.Errorf("compile seccomp: %w", errors.Join(err, errdefs.ErrInvalid))
	}
	if err := Validate(prog); err != nil {
		return nil, fmt.Errorf("compile seccomp: produced an invalid program (a compiler bug): %w", err)
	}
	return prog, nil
}

// intervals covers [0, 2^32) with runs of syscall numbers (only those
// below x32Bit and 0xffffffff reach the dispatch), numbers without a body
// getting def's, neighbours whose bodies are equal merged into one run
// and equal bodies made one pointer (so a body is emitted once).
func intervals(bodies map[uint32]*body, def uint32) []interval {
	defBody := &body{fallback: def}
	nrs := make([]uint32, 0, len(bodies))
	for nr := range bodies {
		nrs = append(nrs, nr)
	}
	sort.Slice(nrs, func(i, j int) bool { return nrs[i] < nrs[j] })
	keyOf := map[*body]string{defBody: defBody.key()}
	canon := map[string]*body{keyOf[defBody]: defBody}
	var ivs []interval
	add := func(lo, hi uint32, b *body) {
		k, ok := keyOf[b]
		if !ok {
			k = b.key()
			keyOf[b] = k
		}
		if c, ok := canon[k]; ok {
			b = c
		} else {
			canon[k] = b
		}
		if n := len(ivs); n > 0 && ivs[n-1].body == b && ivs[n-1].hi+1 == lo {
			ivs[n-1].hi = hi
			return
		}
		ivs = append(ivs, interval{lo, hi, b})
	}
	var cur uint32
	for _, nr := range nrs {
		if nr > cur {
			add(cur, nr-1, defBody)
		}
		add(nr, nr, bodies[nr])
		cur = nr + 1
	}
	add(cur, 0xffffffff, defBody)
	return ivs
}

// emitArchCheck emits step 1 of the package doc: BadArchAction for a
// foreign architecture and for x32 syscalls; it falls through to the
// dispatch with nr loaded.
func emitArchCheck(a *assembler) {
	a.loadWord(offArch)
	archOK := a.newLabel()
	a.jump(bpfJEQ, unix.AUDIT_ARCH_X86_64, archOK, next)
	a.ret(BadArchAction)
	a.place(archOK)
	// x32 syscalls carry the native arch and bit 30 in nr; nr -1 (a
	// tracer skipping a syscall) is left to the dispatch (the default).
	a.loadWord(offNr)
	dispatch := a.newLabel()
	a.jump(bpfJGE, x32Bit, next, dispatch)
	a.jump(bpfJEQ, 0xffffffff, dispatch, next)
	a.ret(BadArchAction)
	a.place(dispatch)
}

// emitDispatch emits the binary search over ivs (nr loaded). A leaf
// returns directly when its body is a single action, else jumps to the
// body's label; it returns those bodies in first-use order, with their
// labels, for the caller to emit once each.
func emitDispatch(a *assembler, ivs []interval) ([]*body, map[*body]label) {
	labels := map[*body]label{}
	var order []*body
	var tree func(ivs []interval)
	tree = func(ivs []interval) {
		if len(ivs) == 1 {
			b := ivs[0].body
			if len(b.rules) == 0 {
				a.ret(b.fallback)
				return
			}
			l, ok := labels[b]
			if !ok {
				l = a.newLabel()
				labels[b] = l
				order = append(order, b)
			}
			a.goTo(l)
			return
		}
		mid := len(ivs) / 2
		right := a.newLabel()
		a.jump(bpfJGE, ivs[mid].lo, right, next)
		tree(ivs[:mid])
		a.place(right)
		tree(ivs[mid:])
	}
	tree(ivs)
	return order, labels
}

// emitCond emits a 64-bit comparison of argument c.index as two 32-bit
// halves (high word first); it falls through when c holds and jumps to fail
// otherwise. Comparisons are unsigned, as libseccomp's.
func emitCond(a *assembler, c cond, fail label) {
	lo := uint32(offArgs + 8*c.index) // little-endian: low word first
	hi := lo + 4
	vlo, vhi := uint32(c.value), uint32(c.value>>32)
	pass := a.newLabel()
	switch c.op {
	case specs.OpEqualTo:
		a.loadWord(hi)
		a.jump(bpfJEQ, vhi, next, fail)
		a.loadWord(lo)
		a.jump(bpfJEQ, vlo, next, fail)
	case specs.OpNotEqual:
		a.loadWord(hi)
		a.jump(bpfJEQ, vhi, next, pass)
		a.loadWord(lo)
		a.jump(bpfJEQ, vlo, fail, next)
	case specs.OpMaskedEqual: // (arg & value) == valueTwo
		wlo, whi := uint32(c.value2), uint32(c.value2>>32)
		a.loadWord(hi)
		a.stmt(bpfALU|bpfAND|bpfK, vhi)
		a.jump(bpfJEQ, whi, next, fail)
		a.loadWord(lo)
		a.stmt(bpfALU|bpfAND|bpfK, vlo)
		a.jump(bpfJEQ, wlo, next, fail)
	case specs.OpGreaterThan, specs.OpGreaterEqual:
		// High word greater: holds; equal: the low word decides.
		loOp := uint16(bpfJGT)
		if c.op == specs.OpGreaterEqual {
			loOp = bpfJGE
		}
		a.loadWord(hi)
		a.jump(bpfJGT, vhi, pass, next)
		a.jump(bpfJEQ, vhi, next, fail)
		a.loadWord(lo)
		a.jump(loOp, vlo, next, fail)
	case specs.OpLessThan, specs.OpLessEqual:
		// The negations: arg < v is !(arg >= v), arg <= v is !(arg > v).
		loOp := uint16(bpfJGE)
		if c.op == specs.OpLessEqual {
			loOp = bpfJGT
		}
		a.loadWord(hi)
		a.jump(bpfJGE, vhi, next, pass)
		a.jump(bpfJEQ, vhi, next, fail)
		a.loadWord(lo)
		a.jump(loOp, vlo, fail, next)
	}
	a.place(pass)
}
