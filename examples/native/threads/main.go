// Command threads is a native Go function with a goroutine ticker
// started at init, for the multi-threaded boot tests: after any boot its
// ticker still runs, and math/rand's global source differs per instance.
package main

import (
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"encoding/json"
	"math/rand"
	"runtime"
	"sync/atomic"
	"time"

	"github.com/catalyzer/catalyzer/sdk/go/function"
)

var ticks atomic.Int64

func handler(ctx context.Context, event json.RawMessage) (any, error) {
	t0 := ticks.Load()
	time.Sleep(30 * time.Millisecond)
	// Late on a loaded machine is not stopped: up to 5 s more.
	for i := 0; i < 500 && ticks.Load() == t0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	b := make([]byte, 8)
	crand.Read(b)
	return map[string]any{
		"ticking":    ticks.Load() > t0,
		"goroutines": runtime.NumGoroutine() >= 2,
		"rand":       rand.Int63(),
		"crypto":     hex.EncodeToString(b),
	}, nil
}

func main() {
	go func() {
		for range time.Tick(2 * time.Millisecond) {
			ticks.Add(1)
		}
	}()
	rand.Int63() // the global source in use at init
	function.Start(handler)
}
