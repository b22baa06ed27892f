package shm

import (
	"testing"
	"time"
)

func TestEventSetClearWait(t *testing.T) {
	e, err := NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	if e.IsSet() || e.Wait(10*time.Millisecond) {
		t.Fatal("a new event is set")
	}
	other, err := OpenEvent(e.Fd()) // a second mapping, as in a child
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	woke := make(chan bool)
	go func() { woke <- other.Wait(10 * time.Second) }()
	time.Sleep(5 * time.Millisecond) // let it reach the futex; a Set before that is fine too
	set := time.Now()
	e.Set()
	if !<-woke {
		t.Fatal("a waiter on another mapping did not see Set")
	}
	// A Set that woke nobody would leave the waiter asleep until its timeout.
	if d := time.Since(set); d > 2*time.Second {
		t.Fatalf("the waiter woke %v after Set", d)
	}
	e.Clear()
	if other.IsSet() {
		t.Fatal("Clear not seen through the other mapping")
	}
	start := time.Now()
	if other.Wait(50 * time.Millisecond) {
		t.Fatal("Wait on a clear event returned true")
	}
	if time.Since(start) < 40*time.Millisecond {
		t.Fatal("Wait returned before its timeout")
	}
}
