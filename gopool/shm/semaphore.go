package shm

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Semaphore is a counting semaphore shared by the processes of one tree, in
// an anonymous memory file, that knows who holds its permits.
//
// Its value (the permits available) is a futex word. Each process that
// holds permits has a slot in a table beside it: its lockerID and how many
// permits it holds. A process holds a permit from its Acquire until its own
// Release; a Release by a process that holds none (a semaphore used to
// signal) only adds a permit. When a process closes the semaphore (it is
// done with it, or exits normally) the permits it still holds are
// consumed, as with the stdlib. But a process that disappears without
// closing it (SIGKILL, a crash, the OOM killer, os._exit) leaves its slot
// behind, and the permits it held are returned to the value by the next
// process that finds none available: within ownerCheckInterval of waiting,
// or at once by an attempt that does not wait (at most once per
// ownerCheckInterval per process, since it reads /proc).
//
// What cannot be known: the permits of a process that found the table full
// (holderSlots processes holding permits at once) are not tracked; and a
// process killed between the two atomic steps of an Acquire or a Release
// (nanoseconds apart) loses that one permit, never creates one.
type Semaphore struct {
	syncMem
	value    *uint32
	sleepers *uint32
	max      uint32
	holders  slotTable

	mine        int          // index of this process's slot, or -1; under holdersMu
	lastReclaim atomic.Int64 // when this process last looked for dead holders (ns)
}

const (
	semOffValue    = syncHeader     // u32: permits available (futex word)
	semOffSleepers = syncHeader + 4 // u32: waiters that may be asleep
	semOffHolders  = 128            // the holders' slots: owner, permits held
	semSize        = 4096

	// SemaphoreValueMax is the largest value (and maximum) of a semaphore:
	// SEM_VALUE_MAX on Linux, the stdlib's bound.
	SemaphoreValueMax = 1<<31 - 1
)

// holdersMu serialises this process's changes to its holder slots, in all
// semaphores (a process may map one semaphore twice).
var holdersMu sync.Mutex

// NewSemaphore creates a semaphore with value permits, of which there can
// be at most max (a Release that would exceed it fails; a maximum of 0
// makes a semaphore that can never be acquired nor released, as the
// stdlib's BoundedSemaphore(0)).
func NewSemaphore(value, max int) (*Semaphore, error) {
	if value < 0 || max < 0 || value > max || max > SemaphoreValueMax {
		return nil, fmt.Errorf("semaphore: bad value %d or maximum %d", value, max)
	}
	m, err := newSyncMem(syncKindSemaphore, uint32(max), semSize)
	if err != nil {
		return nil, err
	}
	s := mapSemaphore(m, uint32(max))
	atomic.StoreUint32(s.value, uint32(value))
	return s, nil
}

// OpenSemaphore maps a semaphore from an inherited descriptor of its memory
// file (its own duplicate: the caller keeps fd).
func OpenSemaphore(fd int) (*Semaphore, error) {
	m, max, err := openSyncMem(fd, syncKindSemaphore, semSize)
	if err != nil {
		return nil, err
	}
	return mapSemaphore(m, max), nil
}

func mapSemaphore(m syncMem, max uint32) *Semaphore {
	return &Semaphore{
		syncMem:  m,
		value:    m.u32(semOffValue),
		sleepers: m.u32(semOffSleepers),
		max:      max,
		holders:  newSlotTable(&m, semOffHolders, semSize),
		mine:     -1,
	}
}

// Max returns the semaphore's maximum value.
func (s *Semaphore) Max() int { return int(s.max) }

// Value returns the number of permits available.
func (s *Semaphore) Value() int { return int(atomic.LoadUint32(s.value)) }

// Acquire takes a permit, waiting up to timeout (0: not at all) for one,
// and reports whether it got one.
func (s *Semaphore) Acquire(timeout time.Duration) bool {
	if s.take() {
		return true
	}
	if timeout <= 0 {
		return s.reclaimDue() && s.reclaim() > 0 && s.take()
	}
	end := time.Now().Add(timeout)
	atomic.AddUint32(s.sleepers, 1)
	defer atomic.AddUint32(s.sleepers, ^uint32(0))
	for {
		if s.take() {
			return true
		}
		wait := time.Until(end)
		if wait <= 0 {
			return false
		}
		if s.reclaimDue() {
			if s.reclaim() > 0 {
				continue
			}
		}
		futexWait(s.value, 0, min(wait, ownerCheckInterval))
	}
}

// take takes a permit if one is available, and notes it in this process's
// slot.
func (s *Semaphore) take() bool {
	for {
		v := atomic.LoadUint32(s.value)
		if v == 0 {
			return false
		}
		if atomic.CompareAndSwapUint32(s.value, v, v-1) {
			break
		}
	}
	holdersMu.Lock()
	if i := s.slot(true); i >= 0 {
		atomic.AddUint32(s.holders.a(i), 1)
	}
	holdersMu.Unlock()
	return true
}

// slot returns this process's slot, claiming one if create is set; -1 if
// it has none (or the table is full). The caller holds holdersMu.
func (s *Semaphore) slot(create bool) int {
	me := lockerID()
	if s.mine >= 0 && atomic.LoadUint64(s.holders.owner(s.mine)) == me {
		return s.mine
	}
	s.mine = s.holders.find(me)
	if s.mine < 0 && create {
		s.mine = s.holders.claim(me)
	}
	return s.mine
}

// Release returns a permit: one this process holds, if any. It fails with
// ErrReleasedTooMany if the value is at the maximum.
func (s *Semaphore) Release() error {
	holdersMu.Lock()
	i := s.slot(false)
	holder := i >= 0 && atomic.LoadUint32(s.holders.a(i)) > 0
	if holder {
		atomic.AddUint32(s.holders.a(i), ^uint32(0))
	}
	for {
		v := atomic.LoadUint32(s.value)
		if v >= s.max {
			if holder {
				atomic.AddUint32(s.holders.a(i), 1)
			}
			holdersMu.Unlock()
			return ErrReleasedTooMany
		}
		if atomic.CompareAndSwapUint32(s.value, v, v+1) {
			break
		}
	}
	if holder && atomic.LoadUint32(s.holders.a(i)) == 0 {
		atomic.StoreUint64(s.holders.owner(i), 0)
		s.mine = -1
	}
	holdersMu.Unlock()
	if atomic.LoadUint32(s.sleepers) != 0 {
		futexWake(s.value, 1)
	}
	return nil
}

// Held returns how many permits this process holds, as far as the table
// knows.
func (s *Semaphore) Held() int {
	holdersMu.Lock()
	defer holdersMu.Unlock()
	if i := s.slot(false); i >= 0 {
		return int(atomic.LoadUint32(s.holders.a(i)))
	}
	return 0
}

// reclaimDue reports whether this process may look for dead holders now
// (at most once per ownerCheckInterval), and if so notes that it does.
func (s *Semaphore) reclaimDue() bool {
	now := time.Now().UnixNano()
	last := s.lastReclaim.Load()
	return now-last >= int64(ownerCheckInterval) && s.lastReclaim.CompareAndSwap(last, now)
}

// reclaim returns to the value the permits held by processes that no
// longer exist, and reports how many it returned.
func (s *Semaphore) reclaim() int {
	me := lockerID()
	alive := aliveCache{}
	var returned uint32
	for i := 0; i < s.holders.n; i++ {
		o := atomic.LoadUint64(s.holders.owner(i))
		if o == 0 || alive.alive(o) {
			continue
		}
		// Dead: its owner word becomes ours (marked) while we clear it, so
		// that no other process clears it too; if we die meanwhile, the
		// next one takes over from us.
		if !atomic.CompareAndSwapUint64(s.holders.owner(i), o, me|slotReclaiming) {
			continue
		}
		n := atomic.SwapUint32(s.holders.a(i), 0)
		returned += s.add(n)
		atomic.StoreUint64(s.holders.owner(i), 0)
	}
	if returned > 0 {
		futexWake(s.value, int(min(returned, 1<<30)))
	}
	return int(returned)
}

// add adds up to n permits to the value, never beyond the maximum, and
// returns how many it added.
func (s *Semaphore) add(n uint32) uint32 {
	for n > 0 {
		v := atomic.LoadUint32(s.value)
		k := min(n, s.max-v)
		if atomic.CompareAndSwapUint32(s.value, v, v+k) {
			return k
		}
	}
	return 0
}

// Close unmaps the semaphore from this process and closes its descriptor.
// The permits this process still holds are consumed: they are not returned
// when it exits.
func (s *Semaphore) Close() error {
	holdersMu.Lock()
	if i := s.slot(false); i >= 0 {
		atomic.StoreUint32(s.holders.a(i), 0)
		atomic.StoreUint64(s.holders.owner(i), 0)
	}
	s.mine = -1
	holdersMu.Unlock()
	return s.close()
}
