package api_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/catalyzer/catalyzer/internal/api/wire"
	"github.com/catalyzer/catalyzer/internal/platform"
)

// TestForkFloorThreaded: the fork floor works for a multi-threaded
// template (its children get a PID namespace of their own, where the
// threads' tids are free), and the platform then closes: a fork whose
// thread re-creation failed left traced threads that kept its shutdown
// waiting forever.
func TestForkFloorThreaded(t *testing.T) {
	e := newEnv(t, platform.Config{})
	e.deploy("nt", wire.DeployRequest{Runtime: "node", Handler: "main.handler", CodePath: filepath.Join(examples(t), "node", "threads")})
	if st := e.waitTemplate("nt"); st != "ready" {
		t.Fatal(st)
	}
	e.waitImage("nt")
	if s, err := e.c.ForkFloor(context.Background(), "nt", nil, 5); err != nil || len(s) != 5 {
		t.Fatalf("fork floor of a threaded template: %v %v", s, err)
	}
	for _, m := range []string{"fork", "warm", "cold"} {
		if _, err := e.c.Invoke(context.Background(), "nt", m, nil); err != nil {
			t.Fatal(err)
		}
	}
	e.srv.Close()
	done := make(chan error, 1)
	go func() { done <- e.p.Close() }()
	select {
	case err := <-done:
		t.Logf("closed: %v", err)
	case <-time.After(20 * time.Second):
		t.Fatal("close hangs")
	}
}
