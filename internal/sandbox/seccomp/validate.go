package seccomp

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/catalyzer/catalyzer/internal/errdefs"
)

// Validate checks prog the way the kernel's classic BPF checker would for a
// seccomp filter, restricted to the instructions seccomp accepts: a length
// of 1 to 4096, known opcodes, 32-bit aligned loads inside seccomp_data,
// forward jumps that land inside the program, no division by a constant
// zero, and a return as the last instruction. Errors wrap errdefs.ErrInvalid.
func Validate(prog []unix.SockFilter) error {
	if len(prog) == 0 || len(prog) > maxInsns {
		return fmt.Errorf("seccomp program of %d instructions (want 1..%d): %w", len(prog), maxInsns, errdefs.ErrInvalid)
	}
	for pc, ins := range prog {
		bad := func(why string) error {
			return fmt.Errorf("seccomp instruction %d %+v: %s: %w", pc, ins, why, errdefs.ErrInvalid)
		}
		switch ins.Code & 0x07 {
		case bpfLD:
			switch ins.Code {
			case bpfLD | bpfW | bpfABS:
				if ins.K >= seccompDataSize || ins.K%4 != 0 {
					return bad("load outside seccomp_data or unaligned")
				}
			case bpfLD | bpfIMM:
			default:
				return bad("unsupported load")
			}
		case bpfLDX:
			if ins.Code != bpfLDX|bpfIMM {
				return bad("unsupported load")
			}
		case bpfALU:
			switch ins.Code &^ 0x08 {
			case bpfALU | bpfADD, bpfALU | bpfSUB, bpfALU | bpfMUL, bpfALU | bpfOR, bpfALU | bpfAND,
				bpfALU | bpfLSH, bpfALU | bpfRSH, bpfALU | bpfXOR:
			case bpfALU | bpfDIV, bpfALU | bpfMOD:
				if ins.Code&bpfX == 0 && ins.K == 0 {
					return bad("division by zero")
				}
			case bpfALU | bpfNEG:
			default:
				return bad("unsupported ALU operation")
			}
		case bpfJMP:
			if ins.Code == bpfJMP|bpfJA {
				if uint64(pc)+1+uint64(ins.K) >= uint64(len(prog)) {
					return bad("jump out of the program")
				}
				continue
			}
			switch ins.Code &^ 0x08 {
			case bpfJMP | bpfJEQ, bpfJMP | bpfJGT, bpfJMP | bpfJGE, bpfJMP | bpfJSET:
			default:
				return bad("unsupported jump")
			}
			if pc+1+int(ins.Jt) >= len(prog) || pc+1+int(ins.Jf) >= len(prog) {
				return bad("jump out of the program")
			}
		case bpfRET:
			if ins.Code != bpfRET|bpfK && ins.Code != bpfRET|bpfA {
				return bad("unsupported return")
			}
		case bpfMISC:
			if ins.Code != bpfMISC|bpfTAX && ins.Code != bpfMISC|bpfTXA {
				return bad("unsupported misc operation")
			}
		default:
			return bad("unsupported instruction class (seccomp has no scratch memory stores)")
		}
	}
	if last := prog[len(prog)-1]; last.Code&0x07 != bpfRET {
		return fmt.Errorf("seccomp program does not end in a return: %w", errdefs.ErrInvalid)
	}
	return nil
}

// Data is struct seccomp_data: what a filter sees of a system call.
type Data struct {
	Nr                 int32
	Arch               uint32
	InstructionPointer uint64
	Args               [6]uint64
}

// bytes encodes d in the host (little-endian, x86_64) layout the kernel uses.
func (d Data) bytes() [seccompDataSize]byte {
	var b [seccompDataSize]byte
	binary.LittleEndian.PutUint32(b[0:], uint32(d.Nr))
	binary.LittleEndian.PutUint32(b[4:], d.Arch)
	binary.LittleEndian.PutUint64(b[8:], d.InstructionPointer)
	for i, a := range d.Args {
		binary.LittleEndian.PutUint64(b[16+8*i:], a)
	}
	return b
}

// Run interprets a valid program over d, as the kernel would, and returns
// the filter's SECCOMP_RET_* value. It is the reference the tests (and a
// curious reader) use to see what a compiled program decides.
func Run(prog []unix.SockFilter, d Data) (uint32, error) {
	if err := Validate(prog); err != nil {
		return 0, err
	}
	data := d.bytes()
	var a, x uint32
	for pc := 0; pc < len(prog); pc++ {
		ins := prog[pc]
		switch ins.Code & 0x07 {
		case bpfLD:
			if ins.Code == bpfLD|bpfIMM {
				a = ins.K
			} else {
				a = binary.LittleEndian.Uint32(data[ins.K:])
			}
		case bpfLDX:
			x = ins.K
		case bpfALU:
			v := ins.K
			if ins.Code&bpfX != 0 {
				v = x
			}
			var ok bool
			if a, ok = alu(ins.Code, a, v); !ok {
				return 0, nil // the kernel returns 0 (kill) on a runtime division by zero
			}
		case bpfJMP:
			if ins.Code == bpfJMP|bpfJA {
				pc += int(ins.K)
				continue
			}
			v := ins.K
			if ins.Code&bpfX != 0 {
				v = x
			}
			if taken(ins.Code, a, v) {
				pc += int(ins.Jt)
			} else {
				pc += int(ins.Jf)
			}
		case bpfRET:
			if ins.Code&bpfA != 0 {
				return a, nil
			}
			return ins.K, nil
		case bpfMISC:
			if ins.Code == bpfMISC|bpfTAX {
				x = a
			} else {
				a = x
			}
		}
	}
	return 0, fmt.Errorf("seccomp program fell off its end: %w", errdefs.ErrInvalid)
}

// alu is the BPF_ALU operation of code on a and v; false for a division
// (or modulo) by zero.
func alu(code uint16, a, v uint32) (uint32, bool) {
	switch code & 0xf0 {
	case bpfADD:
		a += v
	case bpfSUB:
		a -= v
	case bpfMUL:
		a *= v
	case bpfDIV:
		if v == 0 {
			return 0, false
		}
		a /= v
	case bpfMOD:
		if v == 0 {
			return 0, false
		}
		a %= v
	case bpfOR:
		a |= v
	case bpfAND:
		a &= v
	case bpfXOR:
		a ^= v
	case bpfLSH:
		a <<= v & 31
	case bpfRSH:
		a >>= v & 31
	case bpfNEG:
		a = -a
	}
	return a, true
}

// taken is whether the conditional jump of code, comparing a with v,
// goes to its true branch.
func taken(code uint16, a, v uint32) bool {
	switch code & 0xf0 {
	case bpfJEQ:
		return a == v
	case bpfJGT:
		return a > v
	case bpfJGE:
		return a >= v
	case bpfJSET:
		return a&v != 0
	}
	return false
}
