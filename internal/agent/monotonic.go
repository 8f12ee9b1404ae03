package agent

import "golang.org/x/sys/unix"

// Monotonic returns CLOCK_MONOTONIC in nanoseconds: the clock every agent
// stamps ready_ns, entry_ns and exit_ns with (Python time.monotonic_ns,
// Node process.hrtime.bigint via uv_hrtime, C clock_gettime, Go SDK this
// function), so the daemon can subtract its own readings from theirs.
func Monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic("clock_gettime(CLOCK_MONOTONIC): " + err.Error()) // cannot fail on Linux
	}
	return ts.Nano()
}
