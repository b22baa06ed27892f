package shm

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
)

// Barrier is threading.Barrier's state machine shared by the processes of
// one tree, in an anonymous memory file, that breaks when one of its
// parties dies instead of leaving the others waiting forever.
//
// The state (filling, draining, resetting, broken) and the count of parties
// inside wait() are guarded by an internal robustLock, held for
// nanoseconds; every change bumps a sequence word that waiters sleep on.
// The caller runs threading.Barrier.wait with these steps: Enter (wait
// while the barrier drains or resets; take an index), then the last to
// enter runs the action and calls Pass, the others Await; then Leave.
//
// Parties: every process that maps the barrier (Open, the creator from its
// first Enter) has a slot with its lockerID and how many of its threads are
// inside; Close (the process is done with it, or exits normally) frees the
// slot. A process that disappears without closing it (SIGKILL, a crash,
// os._exit) was a party that will never come: a waiter that has waited
// ownerCheckInterval looks for such slots, and if it finds one it breaks
// the barrier (every waiter gets BrokenBarrierError, as after abort) and
// takes the dead party's threads out of the count, so that the barrier can
// drain and be reset. A party that died inside wait() had arrived: if the
// others complete its round, they pass it, and the next round breaks. What
// cannot be known: a party that never mapped the barrier, or that found the
// table full (240 processes), is not watched.
type Barrier struct {
	syncMem
	parties int
	lock    robustLock
	seq     *uint32 // bumped by every change: the futex word of waiters
	state   *int32
	count   *uint32
	extra   *uint32 // parties inside without a slot (the table was full)
	slots   slotTable

	mu   sync.Mutex // guards slot
	slot int        // this mapping's slot, or -1

	lastCheck atomic.Int64 // when this process last looked for dead parties (ns)
}

// Barrier states, as in threading.Barrier.
const (
	BarrierFilling   = 0
	BarrierDraining  = 1
	BarrierResetting = -1
	BarrierBroken    = -2
)

const (
	barOffLock  = syncHeader // u64
	barOffSeq   = 128        // u32
	barOffState = 192        // i32
	barOffCount = 196        // u32
	barOffExtra = 200        // u32
	barOffSlots = 256        // slots: owner, threads inside
	barSize     = 4096
)

var (
	// ErrBarrierBroken is returned by Enter and Await when the barrier is
	// broken (or, for Await, reset).
	ErrBarrierBroken = errors.New("barrier: broken")
	// ErrBarrierPending is returned by Enter and Await when their timeout
	// passed first: call again.
	ErrBarrierPending = errors.New("barrier: still waiting")
)

// NewBarrier creates a barrier for parties parties.
func NewBarrier(parties int) (*Barrier, error) {
	if parties < 1 || parties > 1<<30 {
		return nil, fmt.Errorf("barrier: bad number of parties: %d", parties)
	}
	m, err := newSyncMem(syncKindBarrier, uint32(parties), barSize)
	if err != nil {
		return nil, err
	}
	return mapBarrier(m, uint32(parties)), nil
}

// OpenBarrier maps a barrier from an inherited descriptor of its memory
// file (its own duplicate: the caller keeps fd), and makes this process
// one of its parties.
func OpenBarrier(fd int) (*Barrier, error) {
	m, parties, err := openSyncMem(fd, syncKindBarrier, barSize)
	if err != nil {
		return nil, err
	}
	b := mapBarrier(m, parties)
	b.register()
	return b, nil
}

func mapBarrier(m syncMem, parties uint32) *Barrier {
	return &Barrier{
		syncMem: m,
		parties: int(parties),
		lock:    robustLock{m.u64(barOffLock)},
		seq:     m.u32(barOffSeq),
		state:   (*int32)(unsafe.Pointer(m.u32(barOffState))),
		count:   m.u32(barOffCount),
		extra:   m.u32(barOffExtra),
		slots:   newSlotTable(&m, barOffSlots, barSize),
		slot:    -1,
	}
}

// Parties returns the number of parties the barrier waits for.
func (b *Barrier) Parties() int { return b.parties }

// State returns the state and the number of threads inside wait().
func (b *Barrier) State() (state int, count int) {
	return int(atomic.LoadInt32(b.state)), int(atomic.LoadUint32(b.count))
}

// acquire takes the internal lock (ErrLockBusy if a live process held it
// for lockPatience). If it took it over from a dead process, whose change
// may be half done, it recounts the parties inside from the slots.
func (b *Barrier) acquire() error {
	ok, recovered := b.lock.lock(newDeadline(0))
	if !ok {
		return ErrLockBusy
	}
	if recovered {
		n := atomic.LoadUint32(b.extra)
		for i := 0; i < b.slots.n; i++ {
			if atomic.LoadUint64(b.slots.owner(i)) != 0 {
				n += atomic.LoadUint32(b.slots.a(i))
			}
		}
		atomic.StoreUint32(b.count, n)
	}
	return nil
}

// changed publishes a change: waiters wake up and look.
func (b *Barrier) changed() {
	atomic.AddUint32(b.seq, 1)
	futexWake(b.seq, 1<<30)
}

// register gives this mapping a slot, if it has none and one is free (a
// new slot counts no thread inside: it changes no count).
func (b *Barrier) register() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.slot < 0 {
		b.slot = b.slots.claim(lockerID())
	}
}

// inside changes the count of this mapping's threads inside wait() by d
// (+1 or -1). The caller holds the internal lock.
func (b *Barrier) inside(d uint32) {
	atomic.AddUint32(b.count, d)
	b.mu.Lock()
	if b.slot >= 0 {
		atomic.AddUint32(b.slots.a(b.slot), d)
	} else {
		atomic.AddUint32(b.extra, d)
	}
	b.mu.Unlock()
}

// Enter waits up to timeout while the barrier drains or resets, then
// counts the caller in and returns its index (the last to enter, index
// Parties()-1, runs the action and calls Pass). ErrBarrierBroken if the
// barrier is broken; ErrBarrierPending if the timeout passed first.
func (b *Barrier) Enter(timeout time.Duration) (int, error) {
	b.register()
	end := time.Now().Add(timeout)
	for {
		if err := b.acquire(); err != nil {
			return 0, err
		}
		state, count := atomic.LoadInt32(b.state), atomic.LoadUint32(b.count)
		if state == BarrierBroken {
			b.lock.unlock()
			return 0, ErrBarrierBroken
		}
		if state == BarrierFilling && int(count) < b.parties {
			b.inside(1)
			b.lock.unlock()
			return int(count), nil
		}
		// Draining, resetting, or full while the last one runs the action.
		seq := atomic.LoadUint32(b.seq)
		b.lock.unlock()
		if err := b.sleep(seq, end); err != nil {
			return 0, err
		}
	}
}

// sleep waits until the sequence word moves from seq or end passes, and
// looks for dead parties every ownerCheckInterval. ErrBarrierPending if
// end passed.
func (b *Barrier) sleep(seq uint32, end time.Time) error {
	wait := time.Until(end)
	if wait <= 0 {
		return ErrBarrierPending
	}
	if b.checkDue() {
		if broke, err := b.checkParties(); err != nil || broke {
			return err
		}
	}
	futexWait(b.seq, seq, min(wait, ownerCheckInterval))
	return nil
}

// Pass releases the parties waiting in the barrier (the last to enter
// calls it after the action). It reports false if the barrier was reset
// or broken meanwhile: then the caller's wait fails too.
func (b *Barrier) Pass() (bool, error) {
	if err := b.acquire(); err != nil {
		return false, err
	}
	defer b.lock.unlock()
	if atomic.LoadInt32(b.state) != BarrierFilling {
		return false, nil
	}
	atomic.StoreInt32(b.state, BarrierDraining)
	b.changed()
	return true, nil
}

// Await waits up to timeout for the barrier to let the caller pass: nil
// when it drains, ErrBarrierBroken when it was broken or reset,
// ErrBarrierPending when the timeout passed first.
func (b *Barrier) Await(timeout time.Duration) error {
	end := time.Now().Add(timeout)
	for {
		seq := atomic.LoadUint32(b.seq)
		switch atomic.LoadInt32(b.state) {
		case BarrierDraining:
			return nil
		case BarrierResetting, BarrierBroken:
			return ErrBarrierBroken
		}
		if err := b.sleep(seq, end); err != nil {
			return err
		}
	}
}

// Leave counts the caller out of the barrier after Pass or Await
// (whatever they returned), or after a failed action.
func (b *Barrier) Leave() error {
	if err := b.acquire(); err != nil {
		return err
	}
	defer b.lock.unlock()
	if atomic.LoadUint32(b.count) > 0 {
		b.inside(^uint32(0))
	}
	if atomic.LoadUint32(b.count) == 0 {
		if s := atomic.LoadInt32(b.state); s == BarrierDraining || s == BarrierResetting {
			atomic.StoreInt32(b.state, BarrierFilling)
		}
	}
	b.changed()
	return nil
}

// Break puts the barrier in the broken state (threading.Barrier.abort, and
// a wait that timed out).
func (b *Barrier) Break() error {
	if err := b.acquire(); err != nil {
		return err
	}
	defer b.lock.unlock()
	atomic.StoreInt32(b.state, BarrierBroken)
	b.changed()
	return nil
}

// Reset returns the barrier to its initial state; the parties waiting in
// it get ErrBarrierBroken.
func (b *Barrier) Reset() error {
	if err := b.acquire(); err != nil {
		return err
	}
	defer b.lock.unlock()
	if atomic.LoadUint32(b.count) > 0 {
		if s := atomic.LoadInt32(b.state); s == BarrierFilling || s == BarrierBroken {
			atomic.StoreInt32(b.state, BarrierResetting)
		}
	} else {
		atomic.StoreInt32(b.state, BarrierFilling)
	}
	b.changed()
	return nil
}

// checkDue reports whether this process may look for dead parties now (at
// most once per ownerCheckInterval), and if so notes that it does.
func (b *Barrier) checkDue() bool {
	now := time.Now().UnixNano()
	last := b.lastCheck.Load()
	if last == 0 {
		// The first time a process waits: start counting from now.
		b.lastCheck.CompareAndSwap(0, now)
		return false
	}
	return now-last >= int64(ownerCheckInterval) && b.lastCheck.CompareAndSwap(last, now)
}

// checkParties frees the slots of dead parties, taking their threads out
// of the count, and breaks the barrier if it found any. It reports whether
// it did.
func (b *Barrier) checkParties() (bool, error) {
	alive := aliveCache{}
	dead := false
	for i := 0; i < b.slots.n; i++ {
		if o := atomic.LoadUint64(b.slots.owner(i)); o != 0 && !alive.alive(o) {
			dead = true
			break
		}
	}
	if !dead {
		return false, nil
	}
	if err := b.acquire(); err != nil {
		return false, err
	}
	defer b.lock.unlock()
	broke := false
	for i := 0; i < b.slots.n; i++ {
		o := atomic.LoadUint64(b.slots.owner(i))
		if o == 0 || alive.alive(o) {
			continue
		}
		in := atomic.SwapUint32(b.slots.a(i), 0)
		if c := atomic.LoadUint32(b.count); in > c {
			atomic.StoreUint32(b.count, 0)
		} else {
			atomic.StoreUint32(b.count, c-in)
		}
		atomic.StoreUint64(b.slots.owner(i), 0)
		broke = true
	}
	if broke {
		atomic.StoreInt32(b.state, BarrierBroken)
		b.changed()
	}
	return broke, nil
}

// Close unmaps the barrier from this process and closes its descriptor;
// this mapping is no longer one of its parties.
func (b *Barrier) Close() error {
	b.mu.Lock()
	slot := b.slot
	b.slot = -1
	b.mu.Unlock()
	if slot >= 0 {
		if b.acquire() == nil {
			// Threads of ours still inside (a wait interrupted by the
			// closing) leave with the slot.
			in := atomic.SwapUint32(b.slots.a(slot), 0)
			if c := atomic.LoadUint32(b.count); in <= c {
				atomic.StoreUint32(b.count, c-in)
			}
			atomic.StoreUint64(b.slots.owner(slot), 0)
			b.lock.unlock()
		}
	}
	return b.close()
}
