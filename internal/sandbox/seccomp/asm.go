package seccomp

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Classic BPF opcodes used by the compiler (linux/filter.h, linux/bpf_common.h).
const (
	bpfLD   = 0x00
	bpfALU  = 0x04
	bpfJMP  = 0x05
	bpfRET  = 0x06
	bpfMISC = 0x07
	bpfLDX  = 0x01

	bpfW   = 0x00
	bpfIMM = 0x00
	bpfABS = 0x20
	bpfK   = 0x00
	bpfX   = 0x08
	bpfA   = 0x10

	bpfADD = 0x00
	bpfSUB = 0x10
	bpfMUL = 0x20
	bpfDIV = 0x30
	bpfOR  = 0x40
	bpfAND = 0x50
	bpfLSH = 0x60
	bpfRSH = 0x70
	bpfNEG = 0x80
	bpfMOD = 0x90
	bpfXOR = 0xa0

	bpfJA   = 0x00
	bpfJEQ  = 0x10
	bpfJGT  = 0x20
	bpfJGE  = 0x30
	bpfJSET = 0x40

	bpfTAX = 0x00
	bpfTXA = 0x80

	// maxInsns is the kernel's BPF_MAXINSNS for a classic filter.
	maxInsns = 4096
	// seccompDataSize is sizeof(struct seccomp_data).
	seccompDataSize = 64
)

// label names a position in the program; next means "the instruction that
// follows", the natural fall-through.
type label int

const next label = -1

type opKind uint8

const (
	opPlain opKind = iota // a non-jump instruction, emitted as is
	opCond                // conditional jump to labels
	opJump                // unconditional jump (BPF_JA, 32-bit offset)
	opLabel               // a label definition: no instruction
)

type asmOp struct {
	kind   opKind
	ins    unix.SockFilter // opPlain
	code   uint16          // opCond: BPF_JMP|BPF_Jxx|BPF_K
	k      uint32
	jt, jf label // opCond; jt also the target of opJump
	lbl    label // opLabel
	long   bool  // opCond that needs trampolines (an offset > 255)
}

// assembler collects instructions with symbolic forward jumps and resolves
// them. A conditional jump whose target lies more than 255 instructions
// ahead is rewritten as "jxx k, 0, 1; ja jt; ja jf" (BPF_JA has a 32-bit
// offset); this is repeated until no jump is out of reach.
type assembler struct {
	ops    []asmOp
	labels int
}

func (a *assembler) newLabel() label {
	a.labels++
	return label(a.labels - 1)
}

func (a *assembler) place(l label) { a.ops = append(a.ops, asmOp{kind: opLabel, lbl: l}) }

func (a *assembler) stmt(code uint16, k uint32) {
	a.ops = append(a.ops, asmOp{kind: opPlain, ins: unix.SockFilter{Code: code, K: k}})
}

// loadWord loads the 32-bit word at offset off of seccomp_data into A.
func (a *assembler) loadWord(off uint32) { a.stmt(bpfLD|bpfW|bpfABS, off) }

func (a *assembler) ret(k uint32) { a.stmt(bpfRET|bpfK, k) }

// jump emits "if A <op> k goto jt else goto jf" for op one of bpfJEQ,
// bpfJGT, bpfJGE, bpfJSET.
func (a *assembler) jump(op uint16, k uint32, jt, jf label) {
	a.ops = append(a.ops, asmOp{kind: opCond, code: bpfJMP | op | bpfK, k: k, jt: jt, jf: jf})
}

func (a *assembler) goTo(l label) { a.ops = append(a.ops, asmOp{kind: opJump, jt: l}) }

func (o *asmOp) size() int {
	switch o.kind {
	case opPlain, opJump:
		return 1
	case opCond:
		if o.long {
			return 3
		}
		return 1
	}
	return 0
}

// assemble resolves the labels and returns the program.
func (a *assembler) assemble() ([]unix.SockFilter, error) {
	pos, where, err := a.layout()
	if err != nil {
		return nil, err
	}
	return a.encode(pos, where)
}

// layout gives the position of each op's first instruction and of each
// label. A conditional jump is one instruction until its target is
// farther than 255, then three (with trampolines); widening one moves
// what follows it, so layout repeats until no jump widens.
func (a *assembler) layout() (pos, where []int, err error) {
	pos = make([]int, len(a.ops))
	where = make([]int, a.labels)
	for {
		for i := range where {
			where[i] = -1
		}
		n := 0
		for i := range a.ops {
			pos[i] = n
			if a.ops[i].kind == opLabel {
				if where[a.ops[i].lbl] != -1 {
					return nil, nil, fmt.Errorf("label %d placed twice", a.ops[i].lbl)
				}
				where[a.ops[i].lbl] = n
			}
			n += a.ops[i].size()
		}
		if n > maxInsns {
			return nil, nil, fmt.Errorf("program has %d instructions, the kernel accepts at most %d", n, maxInsns)
		}
		widened, err := a.widen(pos, where)
		if err != nil || !widened {
			return pos, where, err
		}
	}
}

// widen marks long each short conditional jump whose target is out of
// an 8-bit offset's reach, and reports whether it marked any.
func (a *assembler) widen(pos, where []int) (bool, error) {
	widened := false
	for i := range a.ops {
		o := &a.ops[i]
		if o.kind != opCond || o.long {
			continue
		}
		for _, t := range []label{o.jt, o.jf} {
			if t == next {
				continue
			}
			if where[t] < 0 {
				return false, fmt.Errorf("label %d never placed", t)
			}
			if d := where[t] - (pos[i] + 1); d > 255 {
				o.long = true
				widened = true
			}
		}
	}
	return widened, nil
}

// encode writes the instructions of the ops laid out at pos, labels at
// where.
func (a *assembler) encode(pos, where []int) ([]unix.SockFilter, error) {
	off := func(from int, t label) (int, error) {
		if t == next {
			return 0, nil
		}
		d := where[t] - (from + 1)
		if d < 0 {
			return 0, fmt.Errorf("backward jump to label %d", t)
		}
		return d, nil
	}
	prog := make([]unix.SockFilter, 0, len(a.ops))
	for i := range a.ops {
		o := &a.ops[i]
		p := pos[i]
		switch o.kind {
		case opPlain:
			prog = append(prog, o.ins)
		case opJump:
			d, err := off(p, o.jt)
			if err != nil {
				return nil, err
			}
			prog = append(prog, unix.SockFilter{Code: bpfJMP | bpfJA, K: uint32(d)})
		case opCond:
			if !o.long {
				dt, err := off(p, o.jt)
				if err != nil {
					return nil, err
				}
				df, err := off(p, o.jf)
				if err != nil {
					return nil, err
				}
				prog = append(prog, unix.SockFilter{Code: o.code, Jt: uint8(dt), Jf: uint8(df), K: o.k})
				continue
			}
			// Long: the condition picks one of two trampolines that
			// follow it, each a BPF_JA (32-bit offset) to its target.
			prog = append(prog, unix.SockFilter{Code: o.code, Jt: 0, Jf: 1, K: o.k})
			for j, t := range []label{o.jt, o.jf} {
				at := p + 1 + j
				d := p + 3 - (at + 1) // next: past the trampolines
				if t != next {
					var err error
					if d, err = off(at, t); err != nil {
						return nil, err
					}
				}
				prog = append(prog, unix.SockFilter{Code: bpfJMP | bpfJA, K: uint32(d)})
			}
		}
	}
	return prog, nil
}
