package shm

import (
	"errors"
	"sort"
	"sync/atomic"
	"time"
)

// Cond is a condition variable shared by the processes of one tree, in an
// anonymous memory file. The lock it goes with is the caller's business
// (a Mutex): the caller holds it around Enlist and Notify, and releases it
// between Enlist and Sleep.
//
// Each waiter has a slot: the lockerID of its process, a ticket (the order
// in which waiters enlisted) and a state word it sleeps on. Notify(n) marks
// the n oldest waiters notified and wakes exactly them. A waiter that gives
// up (timeout, interrupt) leaves its slot with one compare-and-swap that
// either withdraws it or finds it notified: then the wait succeeded, and
// the notification is not lost. Nothing waits for a waiter to wake up, so
// a waiter that was killed cannot hang a notifier (the stdlib's notify()
// can hang then); and Notify skips waiters whose process is dead, so that
// a notification goes to a live waiter, and frees their slots.
type Cond struct {
	syncMem
	next  *uint32 // the next ticket
	slots slotTable
}

// Slot states (counter b of a slot; counter a is the ticket).
const (
	condFree     = 0
	condWaiting  = 1
	condNotified = 2
	condLeaving  = 3
)

const (
	condOffNext  = syncHeader // u32: the next ticket
	condOffSlots = 128
	condSize     = 4 * 4096

	// CondMaxWaiters is how many waiters a Cond can have at once.
	CondMaxWaiters = (condSize - condOffSlots) / slotSize
)

// ErrTooManyWaiters is returned by Enlist when every slot is taken by a
// live waiter.
var ErrTooManyWaiters = errors.New("condition: too many waiters at once")

// NewCond creates a condition variable without waiters.
func NewCond() (*Cond, error) {
	m, err := newSyncMem(syncKindCond, 0, condSize)
	if err != nil {
		return nil, err
	}
	return mapCond(m), nil
}

// OpenCond maps a condition variable from an inherited descriptor of its
// memory file (its own duplicate: the caller keeps fd).
func OpenCond(fd int) (*Cond, error) {
	m, _, err := openSyncMem(fd, syncKindCond, condSize)
	if err != nil {
		return nil, err
	}
	return mapCond(m), nil
}

func mapCond(m syncMem) *Cond {
	return &Cond{syncMem: m, next: m.u32(condOffNext), slots: newSlotTable(&m, condOffSlots, condSize)}
}

// Enlist makes the caller a waiter and returns its slot. Call it holding
// the lock, then release the lock and Sleep.
func (c *Cond) Enlist() (int, error) {
	me := lockerID()
	i := c.slots.claim(me)
	if i < 0 && c.sweep() > 0 {
		i = c.slots.claim(me)
	}
	if i < 0 {
		return -1, ErrTooManyWaiters
	}
	atomic.StoreUint32(c.slots.a(i), atomic.AddUint32(c.next, 1))
	atomic.StoreUint32(c.slots.b(i), condWaiting)
	return i, nil
}

// Sleep waits up to timeout for the waiter in slot i to be notified, and
// reports whether it was.
func (c *Cond) Sleep(i int, timeout time.Duration) bool {
	if !c.valid(i) {
		return false
	}
	state := c.slots.b(i)
	end := time.Now().Add(timeout)
	for {
		if atomic.LoadUint32(state) != condWaiting {
			return atomic.LoadUint32(state) == condNotified
		}
		wait := time.Until(end)
		if wait <= 0 {
			return false
		}
		futexWait(state, condWaiting, wait)
	}
}

// Leave ends the wait of slot i and frees the slot. It reports whether the
// waiter was notified (even after its timeout: the notification is its).
func (c *Cond) Leave(i int) bool {
	if !c.valid(i) {
		return false
	}
	state := c.slots.b(i)
	notified := !atomic.CompareAndSwapUint32(state, condWaiting, condLeaving) &&
		atomic.LoadUint32(state) == condNotified
	c.free(i)
	return notified
}

func (c *Cond) valid(i int) bool {
	return i >= 0 && i < c.slots.n && atomic.LoadUint64(c.slots.owner(i)) == lockerID()
}

// free clears a slot: its counters first, so that whoever claims it next
// finds them zero.
func (c *Cond) free(i int) {
	atomic.StoreUint32(c.slots.b(i), condFree)
	atomic.StoreUint32(c.slots.a(i), 0)
	atomic.StoreUint64(c.slots.owner(i), 0)
}

// Notify wakes up to n waiters, the longest waiting first, skipping (and
// freeing the slots of) waiters whose process is dead. It returns how many
// it woke. The caller holds the lock.
func (c *Cond) Notify(n int) int {
	if n <= 0 {
		return 0
	}
	type waiter struct {
		slot int
		age  uint32
	}
	next := atomic.LoadUint32(c.next)
	var waiting []waiter
	for i := 0; i < c.slots.n; i++ {
		if atomic.LoadUint64(c.slots.owner(i)) != 0 && atomic.LoadUint32(c.slots.b(i)) == condWaiting {
			waiting = append(waiting, waiter{i, next - atomic.LoadUint32(c.slots.a(i))})
		}
	}
	sort.Slice(waiting, func(a, b int) bool { return waiting[a].age > waiting[b].age })
	alive := aliveCache{}
	woken := 0
	for _, w := range waiting {
		if woken == n {
			break
		}
		owner := atomic.LoadUint64(c.slots.owner(w.slot))
		state := c.slots.b(w.slot)
		if !alive.alive(owner) {
			if atomic.CompareAndSwapUint32(state, condWaiting, condLeaving) {
				c.freeIfOwner(w.slot, owner)
			}
			continue
		}
		if atomic.CompareAndSwapUint32(state, condWaiting, condNotified) {
			futexWake(state, 1)
			woken++
		}
	}
	return woken
}

// freeIfOwner frees slot i if owner (dead) still owns it.
func (c *Cond) freeIfOwner(i int, owner uint64) {
	me := lockerID()
	if atomic.CompareAndSwapUint64(c.slots.owner(i), owner, me|slotReclaiming) {
		atomic.StoreUint32(c.slots.b(i), condFree)
		atomic.StoreUint32(c.slots.a(i), 0)
		atomic.StoreUint64(c.slots.owner(i), 0)
	}
}

// sweep frees the slots of dead processes and returns how many it freed.
func (c *Cond) sweep() int {
	alive := aliveCache{}
	freed := 0
	for i := 0; i < c.slots.n; i++ {
		owner := atomic.LoadUint64(c.slots.owner(i))
		if owner == 0 || alive.alive(owner) {
			continue
		}
		c.freeIfOwner(i, owner)
		freed++
	}
	return freed
}

// Waiters returns the number of waiters not yet notified.
func (c *Cond) Waiters() int {
	n := 0
	for i := 0; i < c.slots.n; i++ {
		if atomic.LoadUint64(c.slots.owner(i)) != 0 && atomic.LoadUint32(c.slots.b(i)) == condWaiting {
			n++
		}
	}
	return n
}

// Close unmaps the condition variable from this process and closes its
// descriptor.
func (c *Cond) Close() error { return c.close() }
