// Package pause holds the smallest process we run: a static x86-64 ELF
// that loops on pause(2), with no libc and no dynamic loader. It is the
// restorer an image is restored into (its mappings are then replaced) and
// what an env holder becomes once its namespaces are built (so that an
// idle pre-built env costs a few pages, not a Go runtime).
package pause

import "encoding/binary"

// Binary returns a minimal static x86-64 ELF that loops on
// pause(): one PT_LOAD segment at 0x10000 (low, far from where images
// keep their executor), no libc, no dynamic loader.
func Binary() []byte {
	const base = 0x10000
	code := []byte{
		0xb8, 0x22, 0x00, 0x00, 0x00, // mov eax, 34 (pause)
		0x0f, 0x05, // syscall
		0xeb, 0xf7, // jmp back to mov
	}
	const ehsize, phsize = 64, 56
	le := binary.LittleEndian
	b := make([]byte, ehsize+phsize)
	copy(b, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0})
	le.PutUint16(b[16:], 2)                  // ET_EXEC
	le.PutUint16(b[18:], 62)                 // EM_X86_64
	le.PutUint32(b[20:], 1)                  // EV_CURRENT
	le.PutUint64(b[24:], base+ehsize+phsize) // e_entry
	le.PutUint64(b[32:], ehsize)             // e_phoff
	le.PutUint16(b[52:], ehsize)             // e_ehsize
	le.PutUint16(b[54:], phsize)             // e_phentsize
	le.PutUint16(b[56:], 1)                  // e_phnum
	p := b[ehsize:]
	le.PutUint32(p[0:], 1)                                // PT_LOAD
	le.PutUint32(p[4:], 5)                                // PF_R|PF_X
	le.PutUint64(p[16:], base)                            // p_vaddr
	le.PutUint64(p[24:], base)                            // p_paddr
	le.PutUint64(p[32:], uint64(ehsize+phsize+len(code))) // p_filesz
	le.PutUint64(p[40:], uint64(ehsize+phsize+len(code))) // p_memsz
	le.PutUint64(p[48:], 0x1000)                          // p_align
	return append(b, code...)
}
