package oci

import (
	"sort"
	"strings"

	"github.com/moby/sys/capability"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/opencontainers/runtime-spec/specs-go/features"

	"github.com/catalyzer/catalyzer/internal/sandbox/cgroup"
)

// Features is what this runtime implements, as `features` prints it.
func Features() features.Features {
	t, f := true, false
	var opts []string
	for o := range mountFlags {
		opts = append(opts, o)
	}
	for o := range propagationFlags {
		opts = append(opts, o)
	}
	sort.Strings(opts)
	var nss []string
	for ns := range nsFlags {
		nss = append(nss, string(ns))
	}
	sort.Strings(nss)
	var caps []string
	last, _ := capability.LastCap()
	for _, c := range capability.ListKnown() {
		if c <= last {
			caps = append(caps, "CAP_"+strings.ToUpper(c.String()))
		}
	}
	return features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specs.Version,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  opts,
		Linux: &features.Linux{
			Namespaces:   nss,
			Capabilities: caps,
			Cgroup:       &features.Cgroup{V1: &t, V2: &t, Systemd: &f, SystemdUser: &f},
			Seccomp: &features.Seccomp{
				Enabled:   &t,
				Actions:   []string{"SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD", "SCMP_ACT_LOG", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"},
				Operators: []string{"SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"},
				Archs:     []string{"SCMP_ARCH_X86_64"},
			},
		},
		Annotations: map[string]string{
			AnnotationTemplate: "true|false", AnnotationBoot: "scratch|fork|restore",
			AnnotationTemplateID: "<container id>", AnnotationImage: "<absolute dir>",
		},
	}
}

// Stats is a container's resource usage, as `events --stats` prints it.
type Stats struct {
	Memory struct {
		Usage uint64 `json:"usage"`
		Max   uint64 `json:"max"`
	} `json:"memory"`
	Pids struct {
		Current uint64 `json:"current"`
	} `json:"pids"`
}

// Stats reads the container's cgroup.
func (c *Container) Stats() (Stats, error) {
	var out Stats
	if c.cg == nil {
		return out, notRunning(c.rec.ID)
	}
	var st cgroup.Stats
	st, err := c.cg.Stats()
	if err != nil {
		return out, err
	}
	out.Memory.Usage, out.Memory.Max, out.Pids.Current = st.MemoryUsage, st.MemoryMaxUsage, st.PidsCurrent
	return out, nil
}
