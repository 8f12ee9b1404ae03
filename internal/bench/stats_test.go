package bench

import "testing"

func TestSummarize(t *testing.T) {
	s := make([]int64, 100)
	for i := range s {
		s[i] = int64(100 - i) // 100..1, unsorted
	}
	got := Summarize(s)
	want := Summary{N: 100, P50: 50, P90: 90, P99: 99, Max: 100}
	if got != want {
		t.Fatalf("Summarize = %+v, want %+v", got, want)
	}
	if got := Summarize([]int64{7}); got != (Summary{N: 1, P50: 7, P90: 7, P99: 7, Max: 7}) {
		t.Fatalf("one sample: %+v", got)
	}
	if got := Summarize(nil); got != (Summary{}) {
		t.Fatalf("no samples: %+v", got)
	}
}
