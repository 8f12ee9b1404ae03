package boot

import "fmt"

// BuildState is where a per-function build of an engine stands: a fork
// template (Fork) or a checkpoint image (Restore), made in the background
// after deploy.
//
//	NotBuilt --Prepare--> Building --ok--> Built
//	                         |  ^            |
//	                       error \--died-----/   (a template is rebuilt)
//	                         v
//	                     BuildFailed             (kept until redeploy)
//
// Drop takes any state back to NotBuilt.
type BuildState int

const (
	NotBuilt BuildState = iota
	Building
	Built
	BuildFailed
)

// String is the state as the API shows it.
func (s BuildState) String() string {
	switch s {
	case NotBuilt:
		return "none"
	case Building:
		return "building"
	case Built:
		return "ready"
	case BuildFailed:
		return "failed"
	}
	return fmt.Sprintf("BuildState(%d)", int(s))
}

// BuildStatus is a build's state and, when it failed, why.
type BuildStatus struct {
	State BuildState
	Err   error // set for BuildFailed
}

// String is "none", "building", "ready" or "failed: <why>", the API's
// words.
func (s BuildStatus) String() string {
	if s.State == BuildFailed && s.Err != nil {
		return "failed: " + s.Err.Error()
	}
	return s.State.String()
}
