package shm

import (
	"sync/atomic"
	"time"
)

// Mutex is a lock shared by the processes of one tree, in an anonymous
// memory file, that survives the death of its holder: its word is a
// robustLock (the holder's pid and start time, futex waits), and a lock
// whose holder no longer exists is taken over by the next process that
// wants it, which learns that it was (like a robust pthread mutex's
// EOWNERDEAD): what the lock protected may be half-updated.
//
// As with the stdlib's multiprocessing.Lock (a semaphore of one), the lock
// is held by a process, not a thread, and any process may release it.
// "Its holder died" means the process that last acquired it no longer
// exists (killed, crashed, or exited without releasing it); a thread that
// ends holding it does not free it.
type Mutex struct {
	syncMem
	lock robustLock
}

const (
	mutexOffWord = syncHeader // u64: the robustLock word
	mutexSize    = 4096
)

// NewMutex creates an unlocked mutex.
func NewMutex() (*Mutex, error) {
	m, err := newSyncMem(syncKindMutex, 0, mutexSize)
	if err != nil {
		return nil, err
	}
	return mapMutex(m), nil
}

// OpenMutex maps a mutex from an inherited descriptor of its memory file
// (its own duplicate: the caller keeps fd).
func OpenMutex(fd int) (*Mutex, error) {
	m, _, err := openSyncMem(fd, syncKindMutex, mutexSize)
	if err != nil {
		return nil, err
	}
	return mapMutex(m), nil
}

func mapMutex(m syncMem) *Mutex {
	return &Mutex{syncMem: m, lock: robustLock{m.u64(mutexOffWord)}}
}

// Acquire takes the mutex, waiting up to timeout (0: not at all). It
// reports whether it got it, and whether it took it over from a holder
// that had died. A holder's death is noticed within ownerCheckInterval of
// waiting, and at once by an attempt that does not wait.
func (m *Mutex) Acquire(timeout time.Duration) (ok, recovered bool) {
	if timeout <= 0 {
		return m.lock.tryLock()
	}
	return m.lock.lockUntil(time.Now().Add(timeout))
}

// Release unlocks the mutex, whoever holds it; ErrReleasedTooMany if it is
// not locked.
func (m *Mutex) Release() error {
	for {
		v := atomic.LoadUint64(m.lock.word)
		if v == 0 {
			return ErrReleasedTooMany
		}
		if atomic.CompareAndSwapUint64(m.lock.word, v, 0) {
			if v&lockWaiters != 0 {
				futexWake(m.lock.low(), 1)
			}
			return nil
		}
	}
}

// Holder returns the pid of the process that holds the mutex, 0 if it is
// free.
func (m *Mutex) Holder() int {
	return int(atomic.LoadUint64(m.lock.word) & lockPidMask)
}

// HeldHere reports whether this process holds the mutex.
func (m *Mutex) HeldHere() bool {
	return atomic.LoadUint64(m.lock.word)&^lockWaiters == lockerID()
}

// Close unmaps the mutex from this process and closes its descriptor. A
// lock this process holds stays held until another process takes it over
// after this process has exited.
func (m *Mutex) Close() error { return m.close() }

// tryLock takes the lock if it is free, or if its owner is dead, without
// waiting.
func (l robustLock) tryLock() (ok, recovered bool) {
	me := lockerID()
	for {
		v := atomic.LoadUint64(l.word)
		if v == 0 {
			if atomic.CompareAndSwapUint64(l.word, 0, me) {
				return true, false
			}
			continue
		}
		if v&^lockWaiters == me || ownerAlive(v) {
			return false, false
		}
		// Others may be asleep on it: keep the waiters bit so that our
		// unlock wakes one.
		if atomic.CompareAndSwapUint64(l.word, v, me|v&lockWaiters) {
			return true, true
		}
	}
}
