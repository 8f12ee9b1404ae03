package oci

import (
	"strings"
	"syscall"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// capList maps capability names ("CAP_CHOWN") to values; names this
// kernel or library does not know are left out, as runc does.
func capList(names []string) []capability.Cap {
	known := map[string]capability.Cap{}
	for _, c := range capability.ListKnown() {
		known["CAP_"+strings.ToUpper(c.String())] = c
	}
	last, _ := capability.LastCap()
	var out []capability.Cap
	for _, n := range names {
		if c, ok := known[strings.ToUpper(n)]; ok && c <= last {
			out = append(out, c)
		}
	}
	return out
}

// setUser switches the calling thread (the init's locked main thread,
// which execs) to process.user and its capability sets: the bounding
// set first (it needs CAP_SETPCAP), then the ids with keep-caps, then
// effective, permitted, inheritable and ambient.
func setUser(p *specs.Process) error {
	caps := p.Capabilities
	if caps == nil {
		caps = &specs.LinuxCapabilities{}
	}
	c, err := capability.NewPid2(0)
	if err == nil {
		err = c.Load()
	}
	if err != nil {
		return initErr("user", err, "read capabilities")
	}
	c.Clear(capability.BOUNDS)
	c.Set(capability.BOUNDING, capList(caps.Bounding)...)
	if err := c.Apply(capability.BOUNDS); err != nil {
		return initErr("user", err, "bounding set")
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 1, 0, 0, 0); err != nil {
		return initErr("user", err, "keep capabilities")
	}
	u := p.User
	gids := make([]int, len(u.AdditionalGids))
	for i, g := range u.AdditionalGids {
		gids[i] = int(g)
	}
	// setgroups is refused in a user namespace whose setgroups is
	// "deny"; with no extra groups that is no error.
	if err := unix.Setgroups(gids); err != nil && len(gids) > 0 {
		return initErr("user", err, "setgroups %v", gids)
	}
	if err := unix.Setresgid(int(u.GID), int(u.GID), int(u.GID)); err != nil {
		return initErr("user", err, "setgid %d", u.GID)
	}
	if err := unix.Setresuid(int(u.UID), int(u.UID), int(u.UID)); err != nil {
		return initErr("user", err, "setuid %d", u.UID)
	}
	if err := unix.Prctl(unix.PR_SET_KEEPCAPS, 0, 0, 0, 0); err != nil {
		return initErr("user", err, "keep capabilities")
	}
	if u.Umask != nil {
		syscall.Umask(int(*u.Umask))
	}
	c.Clear(capability.CAPS | capability.AMBS)
	c.Set(capability.EFFECTIVE, capList(caps.Effective)...)
	c.Set(capability.PERMITTED, capList(caps.Permitted)...)
	c.Set(capability.INHERITABLE, capList(caps.Inheritable)...)
	if err := c.Apply(capability.CAPS); err != nil {
		return initErr("user", err, "capabilities")
	}
	// Ambient capabilities need to be permitted and inheritable; runc
	// skips the ones that are not, and so do we.
	for _, a := range capList(caps.Ambient) {
		_ = unix.Prctl(unix.PR_CAP_AMBIENT, unix.PR_CAP_AMBIENT_RAISE, uintptr(a), 0, 0)
	}
	return nil
}
