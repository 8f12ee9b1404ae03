package procfs

import (
	"encoding/binary"
	"fmt"
)

// AtSysinfoEhdr is the auxv type whose value is the vDSO's base address.
const AtSysinfoEhdr = 33

// Auxv reads /proc/PID/auxv: the auxiliary vector the process was started
// with, as ParseAuxv returns it. See the package doc for its errors.
func Auxv(pid int) ([]byte, error) {
	return readLive(pid, "auxv", ParseAuxv)
}

// ParseAuxv checks the bytes of /proc/PID/auxv, (type, value) pairs of
// native-endian 64-bit words, and returns them up to and including the
// AT_NULL pair (type 0) that ends the vector. Bytes without such a pair
// on a 16-byte boundary are an error wrapping ErrFormat.
func ParseAuxv(b []byte) ([]byte, error) {
	for i := 0; i+16 <= len(b); i += 16 {
		if binary.NativeEndian.Uint64(b[i:]) == 0 {
			return b[:i+16], nil
		}
	}
	return nil, fmt.Errorf("auxv of %d bytes without AT_NULL: %w", len(b), ErrFormat)
}

// AuxvValue returns the value of the first pair of type typ in auxv (as
// ParseAuxv returns it), and whether there is one.
func AuxvValue(auxv []byte, typ uint64) (uint64, bool) {
	for i := 0; i+16 <= len(auxv); i += 16 {
		switch binary.NativeEndian.Uint64(auxv[i:]) {
		case typ:
			return binary.NativeEndian.Uint64(auxv[i+8:]), true
		case 0:
			return 0, false
		}
	}
	return 0, false
}
