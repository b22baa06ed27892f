package gopool

import (
	"testing"
	"time"
)

// BenchmarkRoundTrip measures one task through the core and a worker that
// answers at once: the core's share of an apply() round trip.
func BenchmarkRoundTrip(b *testing.B) {
	t := &testing.T{}
	p := newTestPool(t, 1, 0, "")
	defer p.Terminate()
	payload := [][]byte{[]byte("echo:x")}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j := p.NewJob(false, 0)
		if err := p.Submit(j, payload); err != nil {
			b.Fatal(err)
		}
		_ = p.Seal(j)
		for {
			_, done, err := p.Collect(j, 0, 100*time.Millisecond)
			if err != nil {
				b.Fatal(err)
			}
			if done {
				break
			}
		}
	}
}
