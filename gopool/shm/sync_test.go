package shm

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// deadOwner returns the lockerID of a process that has exited.
func deadOwner(t *testing.T) uint64 {
	t.Helper()
	return uint64(exitedPid(t)) | 12345<<32
}

func newTestMutex(t *testing.T) *Mutex {
	t.Helper()
	m, err := NewMutex()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func TestMutexBasics(t *testing.T) {
	m := newTestMutex(t)
	if err := m.Release(); err != ErrReleasedTooMany {
		t.Fatalf("Release of a free mutex: %v", err)
	}
	if ok, rec := m.Acquire(0); !ok || rec {
		t.Fatalf("Acquire(0) of a free mutex = %v, %v", ok, rec)
	}
	if !m.HeldHere() || m.Holder() != int(lockerID()&lockPidMask) {
		t.Fatal("the holder is not this process")
	}
	// Held by this process: another attempt (another thread) waits.
	if ok, _ := m.Acquire(0); ok {
		t.Fatal("Acquire(0) of a held mutex succeeded")
	}
	start := time.Now()
	if ok, _ := m.Acquire(30 * time.Millisecond); ok {
		t.Fatal("Acquire(30ms) of a held mutex succeeded")
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
	// A second mapping (as in a child) sees the same lock.
	other, err := OpenMutex(m.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = other.Release() // any process may release it
	}()
	if ok, rec := m.Acquire(5 * time.Second); !ok || rec {
		t.Fatalf("Acquire after a release elsewhere = %v, %v", ok, rec)
	}
	if err := m.Release(); err != nil {
		t.Fatal(err)
	}
	if m.Holder() != 0 || m.HeldHere() {
		t.Fatal("a released mutex has a holder")
	}
	if _, err := OpenSemaphore(m.Fd()); err == nil {
		t.Fatal("a mutex opened as a semaphore")
	}
}

func TestMutexExcludes(t *testing.T) {
	m := newTestMutex(t)
	var inside int32
	counter := 0
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 500; i++ {
				if ok, _ := m.Acquire(10 * time.Second); !ok {
					t.Error("Acquire timed out")
					return
				}
				if atomic.AddInt32(&inside, 1) != 1 {
					t.Error("two holders at once")
				}
				counter++
				atomic.AddInt32(&inside, -1)
				if err := m.Release(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if counter != 4000 {
		t.Fatalf("counter = %d", counter)
	}
}

func TestMutexDeadHolderIsTakenOver(t *testing.T) {
	for _, timeout := range []time.Duration{0, 5 * time.Second} {
		m := newTestMutex(t)
		atomic.StoreUint64(m.lock.word, deadOwner(t)|lockWaiters)
		start := time.Now()
		ok, recovered := m.Acquire(timeout)
		if !ok || !recovered {
			t.Fatalf("Acquire(%v) with a dead holder = %v, %v", timeout, ok, recovered)
		}
		if d := time.Since(start); d > time.Second {
			t.Fatalf("took over after %v", d)
		}
		if !m.HeldHere() {
			t.Fatal("not held here after the takeover")
		}
		if err := m.Release(); err != nil {
			t.Fatal(err)
		}
		if ok, recovered := m.Acquire(0); !ok || recovered {
			t.Fatalf("the next Acquire = %v, %v", ok, recovered)
		}
	}
}

func newTestSemaphore(t *testing.T, value, max int) *Semaphore {
	t.Helper()
	s, err := NewSemaphore(value, max)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestSemaphoreBasics(t *testing.T) {
	for _, bad := range [][2]int{{-1, 5}, {3, 2}, {0, -1}, {0, SemaphoreValueMax + 1}} {
		if _, err := NewSemaphore(bad[0], bad[1]); err == nil {
			t.Fatalf("NewSemaphore(%d, %d) did not fail", bad[0], bad[1])
		}
	}
	s := newTestSemaphore(t, 2, SemaphoreValueMax)
	if s.Value() != 2 || s.Max() != SemaphoreValueMax {
		t.Fatalf("value %d max %d", s.Value(), s.Max())
	}
	first, second, third := s.Acquire(0), s.Acquire(0), s.Acquire(0)
	if !first || !second || third {
		t.Fatal("two permits, three acquired (or fewer than two)")
	}
	if s.Value() != 0 || s.Held() != 2 {
		t.Fatalf("value %d, held %d", s.Value(), s.Held())
	}
	start := time.Now()
	if s.Acquire(30 * time.Millisecond) {
		t.Fatal("acquired a permit that is not there")
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
	other, err := OpenSemaphore(s.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = other.Release()
	}()
	if !s.Acquire(5 * time.Second) {
		t.Fatal("a release elsewhere did not wake the waiter")
	}
	for i := 0; i < 5; i++ { // beyond the initial value: a plain semaphore
		if err := s.Release(); err != nil {
			t.Fatal(err)
		}
	}
	if s.Value() != 5 || s.Held() != 0 {
		t.Fatalf("value %d, held %d", s.Value(), s.Held())
	}

	b := newTestSemaphore(t, 1, 1)
	if err := b.Release(); err != ErrReleasedTooMany {
		t.Fatalf("Release of a bounded semaphore at its maximum: %v", err)
	}
	if !b.Acquire(0) {
		t.Fatal("Acquire of a bounded semaphore failed")
	}
	if err := b.Release(); err != nil {
		t.Fatal(err)
	}
	if err := b.Release(); err != ErrReleasedTooMany || b.Value() != 1 {
		t.Fatalf("over-release: %v, value %d", err, b.Value())
	}
}

// fakeDeadHolder makes it look as if a process that has exited took n
// permits.
func fakeDeadHolder(t *testing.T, s *Semaphore, n uint32) {
	t.Helper()
	for i := uint32(0); i < n; i++ {
		if !s.Acquire(0) {
			t.Fatal("no permit to give the dead holder")
		}
	}
	holdersMu.Lock()
	i := s.slot(false)
	holdersMu.Unlock()
	atomic.StoreUint64(s.holders.owner(i), deadOwner(t))
}

func TestSemaphoreDeadHolderPermitsReturn(t *testing.T) {
	s := newTestSemaphore(t, 3, 3)
	fakeDeadHolder(t, s, 2)
	if !s.Acquire(0) { // the live permit
		t.Fatal("the third permit is missing")
	}
	start := time.Now()
	if !s.Acquire(5 * time.Second) {
		t.Fatal("the dead holder's permits never came back")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	if s.Value() != 1 || s.Held() != 2 {
		t.Fatalf("value %d, held %d; want 1, 2", s.Value(), s.Held())
	}
	// A non-blocking attempt reclaims too (once per ownerCheckInterval).
	s2 := newTestSemaphore(t, 1, 1)
	fakeDeadHolder(t, s2, 1)
	s2.lastReclaim.Store(0)
	if !s2.Acquire(0) {
		t.Fatal("Acquire(0) did not reclaim the dead holder's permit")
	}
}

// A process that closes the semaphore holding permits consumed them: they
// do not come back (a semaphore used to signal).
func TestSemaphoreClosedHolderPermitsAreConsumed(t *testing.T) {
	s := newTestSemaphore(t, 1, 1)
	other, err := OpenSemaphore(s.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if !other.Acquire(0) {
		t.Fatal("no permit")
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if s.Held() != 0 {
		t.Fatal("the closed mapping's permit is still held")
	}
	s.lastReclaim.Store(0)
	if s.Acquire(50 * time.Millisecond) {
		t.Fatal("a consumed permit came back")
	}
}

// Permits move between goroutines and the value never goes wrong.
func TestSemaphoreConcurrent(t *testing.T) {
	s := newTestSemaphore(t, 3, 3)
	var inside, most int32
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 300; i++ {
				if !s.Acquire(10 * time.Second) {
					t.Error("Acquire timed out")
					return
				}
				n := atomic.AddInt32(&inside, 1)
				for {
					m := atomic.LoadInt32(&most)
					if n <= m || atomic.CompareAndSwapInt32(&most, m, n) {
						break
					}
				}
				atomic.AddInt32(&inside, -1)
				if err := s.Release(); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	if most > 3 || s.Value() != 3 || s.Held() != 0 {
		t.Fatalf("at most %d inside, value %d, held %d", most, s.Value(), s.Held())
	}
}

func newTestCond(t *testing.T) *Cond {
	t.Helper()
	c, err := NewCond()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestCondNotifyOrderAndCount(t *testing.T) {
	c := newTestCond(t)
	if c.Notify(1) != 0 {
		t.Fatal("notified a waiter that is not there")
	}
	var slots []int
	for i := 0; i < 4; i++ {
		s, err := c.Enlist()
		if err != nil {
			t.Fatal(err)
		}
		slots = append(slots, s)
	}
	if c.Waiters() != 4 {
		t.Fatalf("%d waiters", c.Waiters())
	}
	if c.Notify(2) != 2 {
		t.Fatal("Notify(2) did not wake 2")
	}
	// The two oldest were notified.
	for i, s := range slots {
		if got := c.Sleep(s, 0); got != (i < 2) {
			t.Fatalf("waiter %d notified = %v", i, got)
		}
	}
	if !c.Leave(slots[0]) || c.Leave(slots[2]) {
		t.Fatal("Leave did not report the notifications")
	}
	if c.Waiters() != 1 {
		t.Fatalf("%d waiters left, want 1 (one notified, one gone)", c.Waiters())
	}
	if c.Notify(1<<30) != 1 {
		t.Fatal("Notify(all) did not wake the last waiter")
	}
	if !c.Leave(slots[1]) || !c.Leave(slots[3]) {
		t.Fatal("lost notifications")
	}
	if c.Waiters() != 0 || c.Notify(1) != 0 {
		t.Fatal("waiters remain")
	}
}

func TestCondSleepWakesOnNotify(t *testing.T) {
	c := newTestCond(t)
	other, err := OpenCond(c.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	slot, err := c.Enlist()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if c.Sleep(slot, 30*time.Millisecond) {
		t.Fatal("notified without a Notify")
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("Sleep returned after %v", d)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		other.Notify(1)
	}()
	if !c.Sleep(slot, 5*time.Second) || !c.Leave(slot) {
		t.Fatal("a Notify through another mapping did not wake the waiter")
	}
}

// A waiter that gives up at the moment it is notified either withdraws
// before the notification (which then goes to the next waiter) or keeps
// it: a notification is never lost.
func TestCondNoLostNotification(t *testing.T) {
	c := newTestCond(t)
	for round := 0; round < 200; round++ {
		a, _ := c.Enlist()
		b, _ := c.Enlist()
		var gotA bool
		done := make(chan struct{})
		go func() { gotA = c.Leave(a); close(done) }()
		woken := c.Notify(1)
		<-done
		gotB := c.Leave(b)
		if woken != 1 || gotA == gotB {
			t.Fatalf("round %d: woke %d, a %v, b %v: want exactly one notified", round, woken, gotA, gotB)
		}
	}
}

func TestCondDeadWaiterIsSkipped(t *testing.T) {
	c := newTestCond(t)
	dead, _ := c.Enlist()
	atomic.StoreUint64(c.slots.owner(dead), deadOwner(t))
	live, _ := c.Enlist()
	if c.Notify(1) != 1 {
		t.Fatal("Notify(1) woke nobody")
	}
	if !c.Leave(live) {
		t.Fatal("the notification went to the dead waiter")
	}
	if atomic.LoadUint64(c.slots.owner(dead)) != 0 {
		t.Fatal("the dead waiter's slot was not freed")
	}
}

func TestCondTooManyWaiters(t *testing.T) {
	c := newTestCond(t)
	for i := 0; i < CondMaxWaiters; i++ {
		if _, err := c.Enlist(); err != nil {
			t.Fatalf("waiter %d: %v", i, err)
		}
	}
	if _, err := c.Enlist(); !errors.Is(err, ErrTooManyWaiters) {
		t.Fatalf("one waiter too many: %v", err)
	}
	atomic.StoreUint64(c.slots.owner(7), deadOwner(t))
	if _, err := c.Enlist(); err != nil {
		t.Fatalf("a dead waiter's slot was not reused: %v", err)
	}
}

func newTestBarrier(t *testing.T, parties int) *Barrier {
	t.Helper()
	b, err := NewBarrier(parties)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

// barrierWait is threading.Barrier.wait over the core's steps, with an
// action run by the last to enter.
func barrierWait(b *Barrier, timeout time.Duration, action func()) (int, error) {
	end := time.Now().Add(timeout)
	var index int
	for {
		i, err := b.Enter(100 * time.Millisecond)
		if err == nil {
			index = i
			break
		}
		if err != ErrBarrierPending {
			return 0, err
		}
	}
	defer b.Leave()
	if index == b.Parties()-1 {
		if action != nil {
			action()
		}
		if ok, err := b.Pass(); err != nil || !ok {
			return 0, ErrBarrierBroken
		}
		return index, nil
	}
	for {
		err := b.Await(min(time.Until(end), 100*time.Millisecond))
		if err != ErrBarrierPending {
			return index, err
		}
		if time.Until(end) <= 0 {
			_ = b.Break()
			return 0, ErrBarrierBroken
		}
	}
}

func TestBarrierRounds(t *testing.T) {
	const parties, rounds = 4, 50
	b := newTestBarrier(t, parties)
	var actions, arrived int32
	var wg sync.WaitGroup
	indexes := make(chan int, parties*rounds)
	for g := 0; g < parties; g++ {
		m := b
		if g%2 == 1 { // half of them through a second mapping
			other, err := OpenBarrier(b.Fd())
			if err != nil {
				t.Fatal(err)
			}
			defer other.Close()
			m = other
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				atomic.AddInt32(&arrived, 1)
				i, err := barrierWait(m, 10*time.Second, func() { atomic.AddInt32(&actions, 1) })
				if err != nil {
					t.Error(err)
					return
				}
				// Nobody passes round r before all arrived at it.
				if a := atomic.LoadInt32(&arrived); a < int32((r+1)*parties) {
					t.Errorf("passed round %d with %d arrivals", r, a)
				}
				indexes <- i
			}
		}()
	}
	wg.Wait()
	close(indexes)
	count := map[int]int{}
	for i := range indexes {
		count[i]++
	}
	for i := 0; i < parties; i++ {
		if count[i] != rounds {
			t.Fatalf("index %d returned %d times, want %d", i, count[i], rounds)
		}
	}
	if actions != rounds {
		t.Fatalf("the action ran %d times", actions)
	}
	if state, n := b.State(); state != BarrierFilling || n != 0 {
		t.Fatalf("state %d with %d inside after the rounds", state, n)
	}
}

func TestBarrierTimeoutBreaksAndResetRepairs(t *testing.T) {
	b := newTestBarrier(t, 2)
	if _, err := barrierWait(b, 30*time.Millisecond, nil); err != ErrBarrierBroken {
		t.Fatalf("a lone waiter's timeout: %v", err)
	}
	if state, _ := b.State(); state != BarrierBroken {
		t.Fatalf("state %d after the timeout", state)
	}
	if _, err := b.Enter(0); err != ErrBarrierBroken {
		t.Fatalf("Enter of a broken barrier: %v", err)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() { _, err := barrierWait(b, 5*time.Second, nil); errs <- err }()
	}
	for g := 0; g < 2; g++ {
		if err := <-errs; err != nil {
			t.Fatalf("after reset: %v", err)
		}
	}
}

// A party that died inside wait() breaks the barrier for the others, and
// is counted out so that the barrier can be reset and used again.
func TestBarrierDeadPartyInsideBreaksIt(t *testing.T) {
	b := newTestBarrier(t, 3)
	other, err := OpenBarrier(b.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.Enter(time.Second); err != nil {
		t.Fatal(err)
	}
	// The other mapping's process "dies" inside.
	atomic.StoreUint64(other.slots.owner(other.slot), deadOwner(t))
	other.mu.Lock()
	other.slot = -1
	other.mu.Unlock()
	defer other.close()
	start := time.Now()
	if _, err := barrierWait(b, 10*time.Second, nil); err != ErrBarrierBroken {
		t.Fatalf("with a dead party: %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("broke after %v", d)
	}
	if state, n := b.State(); state != BarrierBroken || n != 0 {
		t.Fatalf("state %d, %d inside", state, n)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	b2, err := OpenBarrier(b.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	b3, err := OpenBarrier(b.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer b3.Close()
	errs := make(chan error, 3)
	for _, m := range []*Barrier{b, b2, b3} {
		go func() { _, err := barrierWait(m, 5*time.Second, nil); errs <- err }()
	}
	for i := 0; i < 3; i++ {
		if err := <-errs; err != nil {
			t.Fatalf("after the reset: %v", err)
		}
	}
}

// A party that died between waits (it mapped the barrier, it will never
// come) breaks it too.
func TestBarrierDeadPartyOutsideBreaksIt(t *testing.T) {
	b := newTestBarrier(t, 2)
	other, err := OpenBarrier(b.Fd())
	if err != nil {
		t.Fatal(err)
	}
	atomic.StoreUint64(other.slots.owner(other.slot), deadOwner(t))
	other.slot = -1
	defer other.close()
	if _, err := barrierWait(b, 10*time.Second, nil); err != ErrBarrierBroken {
		t.Fatalf("with a dead party: %v", err)
	}
}

// A party that closed the barrier is no longer watched: its absence does
// not break it.
func TestBarrierClosedPartyIsNotDead(t *testing.T) {
	b := newTestBarrier(t, 2)
	other, err := OpenBarrier(b.Fd())
	if err != nil {
		t.Fatal(err)
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := barrierWait(b, 100*time.Millisecond, nil); err != ErrBarrierBroken {
		t.Fatalf("a lone waiter: %v", err)
	}
	if d := time.Since(start); d < 90*time.Millisecond {
		t.Fatalf("broke after %v, before its timeout", d)
	}
}

func TestBarrierResetWakesWaiters(t *testing.T) {
	b := newTestBarrier(t, 3)
	errs := make(chan error, 2)
	for g := 0; g < 2; g++ {
		go func() { _, err := barrierWait(b, 10*time.Second, nil); errs <- err }()
	}
	for {
		if _, n := b.State(); n == 2 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	if err := b.Reset(); err != nil {
		t.Fatal(err)
	}
	for g := 0; g < 2; g++ {
		if err := <-errs; err != ErrBarrierBroken {
			t.Fatalf("a waiter of a reset barrier: %v", err)
		}
	}
	if state, n := b.State(); state != BarrierFilling || n != 0 {
		t.Fatalf("state %d, %d inside after the reset drained", state, n)
	}
}
