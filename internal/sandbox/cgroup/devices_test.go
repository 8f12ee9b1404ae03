package cgroup

import (
	"testing"

	"github.com/containerd/cgroups/v3/cgroup2"
)

// TestDeviceFilterCompiles: the v2 eBPF device filter accepts our rules
// (it dereferences Major and Minor, so wildcards must be -1, not nil).
func TestDeviceFilterCompiles(t *testing.T) {
	if _, _, err := cgroup2.DeviceFilter(DeviceRules); err != nil {
		t.Fatal(err)
	}
}
