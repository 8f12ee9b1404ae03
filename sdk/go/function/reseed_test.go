package function

import (
	"math/rand"
	"os"
	"testing"
)

// TestSeedMathRand: with Go 1.24+'s default randseednop=1 a bare rand.Seed
// does nothing; seedMathRand must really reseed the global source of the
// running process, and leave GODEBUG as it found it.
func TestSeedMathRand(t *testing.T) {
	for _, godebug := range []string{"", "madvdontneed=1", "randseednop=1"} {
		if godebug == "" {
			os.Unsetenv("GODEBUG")
		} else {
			t.Setenv("GODEBUG", godebug)
		}
		for _, seed := range []int64{42, 43} {
			seedMathRand(seed)
			want := rand.New(rand.NewSource(seed))
			for i := 0; i < 3; i++ {
				if got, w := rand.Int63(), want.Int63(); got != w {
					t.Fatalf("GODEBUG=%q seed %d: draw %d = %d, want %d: rand.Seed had no effect", godebug, seed, i, got, w)
				}
			}
		}
		if got, had := os.LookupEnv("GODEBUG"); got != godebug || had != (godebug != "") {
			t.Fatalf("GODEBUG = %q (set %v) after seedMathRand, want %q", got, had, godebug)
		}
	}
}

// TestReseedMathRandDiffers: two reseeds give two sequences, as two clones
// of one template must.
func TestReseedMathRandDiffers(t *testing.T) {
	reseedMathRand()
	a := rand.Int63()
	reseedMathRand()
	if b := rand.Int63(); a == b {
		t.Fatalf("two reseeds drew %d both times", a)
	}
}

// BenchmarkReseedMathRand is what Forked costs a Go function.
func BenchmarkReseedMathRand(b *testing.B) {
	for b.Loop() {
		reseedMathRand()
	}
}
