package boot

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestBuildStatusString(t *testing.T) {
	for _, tc := range []struct {
		s    BuildStatus
		want string
	}{
		{BuildStatus{State: NotBuilt}, "none"},
		{BuildStatus{State: Building}, "building"},
		{BuildStatus{State: Built}, "ready"},
		{BuildStatus{State: BuildFailed, Err: errors.New("init raised")}, "failed: init raised"},
		{BuildStatus{State: 9}, "BuildState(9)"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v: %q, want %q", tc.s, got, tc.want)
		}
	}
}

// TestForkWaitNoTemplate: Wait on a function without a template answers
// NotBuilt at once; on one still building it returns when ctx ends.
func TestForkWaitNoTemplate(t *testing.T) {
	f := &Fork{}
	st, err := f.Wait(context.Background(), "nothing")
	if err != nil || st.State != NotBuilt {
		t.Fatalf("Wait on no template: %v %v", st, err)
	}
	f.init()
	f.tpls["slow"] = &template{built: make(chan struct{}), replaced: make(chan struct{}), stop: make(chan struct{})}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	st, err = f.Wait(ctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) || st.State != Building {
		t.Fatalf("Wait on a building template: %v %v", st, err)
	}
}
