package boot

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/errdefs"
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
	f.tpls.put("slow", &template{built: make(chan struct{}), replaced: make(chan struct{}), stop: make(chan struct{})})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	st, err = f.Wait(ctx, "slow")
	if !errors.Is(err, context.DeadlineExceeded) || st.State != Building {
		t.Fatalf("Wait on a building template: %v %v", st, err)
	}
}

func TestRegistry(t *testing.T) {
	var r registry[*int]
	a, b, c := new(int), new(int), new(int)
	if old, ok := r.put("f", a); !ok || old != nil {
		t.Fatalf("first put: %v %v", old, ok)
	}
	if old, ok := r.put("f", b); !ok || old != a {
		t.Fatalf("replacing put: %v %v", old, ok)
	}
	if r.replace("f", a, c) {
		t.Fatal("replace of a record no longer current succeeded")
	}
	if !r.replace("f", b, c) || r.get("f") != c {
		t.Fatal("replace of the current record failed")
	}
	if r.take("f") != c || r.get("f") != nil || r.take("f") != nil {
		t.Fatal("take")
	}
	r.put("g", a)
	if all := r.close(); len(all) != 1 || all[0] != a {
		t.Fatalf("close: %v", all)
	}
	if _, ok := r.put("h", b); ok || r.get("g") != nil || r.replace("g", nil, b) {
		t.Fatal("a closed registry kept something")
	}
}

// TestRestoreDroppedWhileWaiting: an image whose function is dropped
// while it waits for the template fails as ErrNotFound (the API's 404:
// the function is gone), not as an internal error (500).
func TestRestoreDroppedWhileWaiting(t *testing.T) {
	f := &Fork{}
	f.init()
	defer f.tr.Close()
	// A template that never finishes building.
	f.tpls.put("f", &template{built: make(chan struct{}), replaced: make(chan struct{}), stop: make(chan struct{})})
	got := make(chan error, 1)
	r := &Restore{Fork: f, Dir: t.TempDir(), OnImage: func(_ string, err error) { got <- err }}
	defer r.Close()
	r.Prepare(Function{Name: "f"})
	r.Drop("f") // waits for the image build to end
	err := <-got
	if k := errdefs.Classify(err); !errors.Is(err, errdefs.ErrNotFound) || k.Status != 404 {
		t.Fatalf("image of a dropped function: %v (status %d), want ErrNotFound (404)", err, k.Status)
	}
}
