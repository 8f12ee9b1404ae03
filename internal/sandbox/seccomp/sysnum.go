package seccomp

//go:generate go run mksysnum.go

// SyscallNumber returns the x86_64 number of the named syscall ("openat",
// "clone3"), as the compiler resolves profile names. ok is false for a name
// the table does not know: Compile skips such names in a profile, as
// libseccomp does, and rejects them in Options.Trace.
func SyscallNumber(name string) (nr uint32, ok bool) {
	nr, ok = sysnumX86_64[name]
	return nr, ok
}
