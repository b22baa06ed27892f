package pybind

import (
	"errors"

	"github.com/gopool/gopool/gopool/shm"
)

// Locks, semaphores, conditions and barriers (gopool.synchronize): see
// shm.Mutex, shm.Semaphore, shm.Cond and shm.Barrier. Blocking calls take a
// timeout in milliseconds that Python keeps short (slices). XClose unmaps
// an object from this process and forgets its id (XRelease, for a lock or
// a semaphore, is the release of the primitive).

// Results of MutexAcquire, BarrierEnter and BarrierAwait.
const (
	LockTimedOut   = 0  // not acquired
	LockAcquired   = 1  // acquired
	LockRecovered  = 2  // acquired by taking it over from a holder that died
	BarrierPassed  = 1  // Await: the barrier let the caller through
	BarrierPending = -1 // Enter, Await: the timeout passed first
	BarrierBroken  = -2 // Enter, Await: the barrier is broken (or was reset)
)

var (
	mutexes    = newRegistry[*shm.Mutex]()
	semaphores = newRegistry[*shm.Semaphore]()
	conds      = newRegistry[*shm.Cond]()
	barriers   = newRegistry[*shm.Barrier]()
)

// MutexNew creates an unlocked process-shared lock.
func MutexNew() (int64, error) {
	m, err := shm.NewMutex()
	if err != nil {
		return result(int64(0), err)
	}
	return mutexes.add(m), nil
}

// MutexOpen maps a lock from an inherited descriptor.
func MutexOpen(fd int64) (int64, error) {
	m, err := shm.OpenMutex(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return mutexes.add(m), nil
}

// MutexFd returns the descriptor of a lock's memory file.
func MutexFd(mutex int64) (int64, error) {
	m, err := mutexes.get(mutex)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(m.Fd()), nil
}

// MutexAcquire takes the lock, waiting up to timeoutMs: LockTimedOut,
// LockAcquired or LockRecovered.
func MutexAcquire(mutex int64, timeoutMs int) (int64, error) {
	m, err := mutexes.get(mutex)
	if err != nil {
		return result(int64(0), err)
	}
	switch ok, recovered := m.Acquire(millis(timeoutMs)); {
	case !ok:
		return LockTimedOut, nil
	case recovered:
		return LockRecovered, nil
	}
	return LockAcquired, nil
}

// MutexRelease unlocks the lock (CodeReleasedTooMany if it is not locked).
func MutexRelease(mutex int64) (int64, error) {
	m, err := mutexes.get(mutex)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), m.Release())
}

// MutexHolder returns the pid of the lock's holder, 0 if it is free.
func MutexHolder(mutex int64) (int64, error) {
	m, err := mutexes.get(mutex)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(m.Holder()), nil
}

// MutexHeldHere reports whether this process holds the lock.
func MutexHeldHere(mutex int64) (bool, error) {
	m, err := mutexes.get(mutex)
	if err != nil {
		return result(false, err)
	}
	return m.HeldHere(), nil
}

// MutexClose unmaps a lock from this process and forgets its id.
func MutexClose(mutex int64) (int64, error) {
	m, err := mutexes.take(mutex)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), m.Close())
}

// SemaphoreNew creates a semaphore of value permits and at most max.
func SemaphoreNew(value, max int64) (int64, error) {
	if value < 0 || max < 0 || value > max || max > shm.SemaphoreValueMax {
		return result(int64(0), errBadArgument("semaphore value %d or maximum %d out of range", value, max))
	}
	s, err := shm.NewSemaphore(int(value), int(max))
	if err != nil {
		return result(int64(0), err)
	}
	return semaphores.add(s), nil
}

// SemaphoreOpen maps a semaphore from an inherited descriptor.
func SemaphoreOpen(fd int64) (int64, error) {
	s, err := shm.OpenSemaphore(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return semaphores.add(s), nil
}

// SemaphoreFd returns the descriptor of a semaphore's memory file.
func SemaphoreFd(sem int64) (int64, error) {
	s, err := semaphores.get(sem)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(s.Fd()), nil
}

// SemaphoreAcquire takes a permit, waiting up to timeoutMs, and reports
// whether it got one.
func SemaphoreAcquire(sem int64, timeoutMs int) (bool, error) {
	s, err := semaphores.get(sem)
	if err != nil {
		return result(false, err)
	}
	return s.Acquire(millis(timeoutMs)), nil
}

// SemaphoreRelease returns a permit (CodeReleasedTooMany at the maximum).
func SemaphoreRelease(sem int64) (int64, error) {
	s, err := semaphores.get(sem)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), s.Release())
}

// SemaphoreValue returns the permits available.
func SemaphoreValue(sem int64) (int64, error) {
	s, err := semaphores.get(sem)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(s.Value()), nil
}

// SemaphoreMax returns the semaphore's maximum value.
func SemaphoreMax(sem int64) (int64, error) {
	s, err := semaphores.get(sem)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(s.Max()), nil
}

// SemaphoreClose unmaps a semaphore from this process (the permits it
// holds are consumed) and forgets its id.
func SemaphoreClose(sem int64) (int64, error) {
	s, err := semaphores.take(sem)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), s.Close())
}

// CondNew creates a condition variable.
func CondNew() (int64, error) {
	c, err := shm.NewCond()
	if err != nil {
		return result(int64(0), err)
	}
	return conds.add(c), nil
}

// CondOpen maps a condition variable from an inherited descriptor.
func CondOpen(fd int64) (int64, error) {
	c, err := shm.OpenCond(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return conds.add(c), nil
}

// CondFd returns the descriptor of a condition variable's memory file.
func CondFd(cond int64) (int64, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(c.Fd()), nil
}

// CondEnlist makes the caller (holding the lock) a waiter and returns its
// slot (CodeTooManyWaiters if there is none).
func CondEnlist(cond int64) (int64, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(int64(0), err)
	}
	slot, err := c.Enlist()
	return result(int64(slot), err)
}

// CondSleep waits up to timeoutMs for the waiter of slot to be notified,
// and reports whether it was.
func CondSleep(cond, slot int64, timeoutMs int) (bool, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(false, err)
	}
	return c.Sleep(int(slot), millis(timeoutMs)), nil
}

// CondLeave ends the wait of slot and reports whether it was notified.
func CondLeave(cond, slot int64) (bool, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(false, err)
	}
	return c.Leave(int(slot)), nil
}

// CondNotify wakes up to n waiters, oldest first, and returns how many.
func CondNotify(cond, n int64) (int64, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(c.Notify(int(min(n, 1<<30)))), nil
}

// CondWaiters returns the number of waiters not yet notified.
func CondWaiters(cond int64) (int64, error) {
	c, err := conds.get(cond)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(c.Waiters()), nil
}

// CondClose unmaps a condition variable from this process and forgets its
// id.
func CondClose(cond int64) (int64, error) {
	c, err := conds.take(cond)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), c.Close())
}

// BarrierNew creates a barrier for parties parties.
func BarrierNew(parties int64) (int64, error) {
	if parties < 1 || parties > 1<<30 {
		return result(int64(0), errBadArgument("parties must be at least 1, not %d", parties))
	}
	b, err := shm.NewBarrier(int(parties))
	if err != nil {
		return result(int64(0), err)
	}
	return barriers.add(b), nil
}

// BarrierOpen maps a barrier from an inherited descriptor; this process
// becomes one of its parties.
func BarrierOpen(fd int64) (int64, error) {
	b, err := shm.OpenBarrier(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return barriers.add(b), nil
}

// BarrierFd returns the descriptor of a barrier's memory file.
func BarrierFd(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(b.Fd()), nil
}

// BarrierParties returns the number of parties of a barrier.
func BarrierParties(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(b.Parties()), nil
}

// barrierResult turns Enter's and Await's errors into results.
func barrierResult(v int64, err error) (int64, error) {
	switch {
	case errors.Is(err, shm.ErrBarrierPending):
		return BarrierPending, nil
	case errors.Is(err, shm.ErrBarrierBroken):
		return BarrierBroken, nil
	}
	return result(v, err)
}

// BarrierEnter waits up to timeoutMs while the barrier drains, then counts
// the caller in: its index, BarrierPending or BarrierBroken.
func BarrierEnter(barrier int64, timeoutMs int) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	index, err := b.Enter(millis(timeoutMs))
	return barrierResult(int64(index), err)
}

// BarrierPass lets the waiting parties through (the last to enter calls
// it); false if the barrier was reset or broken meanwhile.
func BarrierPass(barrier int64) (bool, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(false, err)
	}
	return result(b.Pass())
}

// BarrierAwait waits up to timeoutMs to be let through: BarrierPassed,
// BarrierPending or BarrierBroken.
func BarrierAwait(barrier int64, timeoutMs int) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	if err := b.Await(millis(timeoutMs)); err != nil {
		return barrierResult(0, err)
	}
	return BarrierPassed, nil
}

// BarrierLeave counts the caller out after Enter.
func BarrierLeave(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), b.Leave())
}

// BarrierBreak puts the barrier in the broken state.
func BarrierBreak(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), b.Break())
}

// BarrierReset returns the barrier to its initial state.
func BarrierReset(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), b.Reset())
}

// BarrierState returns the barrier's state (0 filling, 1 draining, -1
// resetting, -2 broken).
func BarrierState(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	state, _ := b.State()
	return int64(state), nil
}

// BarrierCount returns the number of threads inside wait().
func BarrierCount(barrier int64) (int64, error) {
	b, err := barriers.get(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	_, count := b.State()
	return int64(count), nil
}

// BarrierClose unmaps a barrier from this process (which is no longer
// one of its parties) and forgets its id.
func BarrierClose(barrier int64) (int64, error) {
	b, err := barriers.take(barrier)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), b.Close())
}
