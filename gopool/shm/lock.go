package shm

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// A robustLock is a mutex in memory shared between processes that survives
// the death of its owner.
//
// Its 64-bit word is 0 when free; otherwise the low 32 bits hold the owner's
// pid, plus lockWaiters while someone may be asleep on it, and the high 32
// bits hold the owner's start time (see processToken), so that a pid reused
// by an unrelated process is not mistaken for the owner. Sleepers wait on
// the low half with a (non-private) futex. A waiter that has slept
// ownerCheckInterval without the word changing checks whether the owner
// still exists; if not, it takes the lock over with one compare-and-swap
// (only one of several such waiters succeeds).
//
// The lock does not repair what it protects: the queue's operations publish
// their effect with one atomic store at the end, so a dead owner's unfinished
// work is invisible and the new owner simply does its own.
//
// The word must be 8-byte aligned and the machine little-endian (the futex
// address is the word's low half).
type robustLock struct {
	word *uint64
}

const (
	lockPidMask = 1<<30 - 1
	lockWaiters = 1 << 30

	// ownerCheckInterval is how long a waiter sleeps before it checks that
	// the owner is alive: the longest a dead owner blocks the others.
	ownerCheckInterval = 20 * time.Millisecond
	// lockSpins is how many times a locker retries before it sleeps (a few
	// microseconds): the lock is normally held for well under one.
	lockSpins = 2000
)

// lockerID is what this process stores in a lock word it owns.
func lockerID() uint64 {
	self.once.Do(initSelf)
	return self.id
}

var self struct {
	once sync.Once
	id   uint64
}

func initSelf() {
	pid := os.Getpid()
	token, _ := processToken(pid)
	self.id = uint64(token)<<32 | uint64(pid)&lockPidMask
}

// processToken returns the low 32 bits of a process's start time (in clock
// ticks since boot, field 22 of /proc/PID/stat), and its state letter.
// ok is false when /proc cannot tell (no such process, or no /proc).
func processToken(pid int) (token uint32, ok bool) {
	token, _, ok = procStat(pid)
	return token, ok
}

func procStat(pid int) (token uint32, state byte, ok bool) {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, false
	}
	// The command name (field 2) is in parentheses and may contain
	// anything: the fields that follow start after the last ')'.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0, 0, false
	}
	fields := bytes.Fields(data[i+1:])
	if len(fields) < 20 {
		return 0, 0, false
	}
	start, err := strconv.ParseUint(string(fields[19]), 10, 64)
	if err != nil {
		return 0, 0, false
	}
	return uint32(start), fields[0][0], true
}

// ownerAlive reports whether the process that stored word in a lock still
// exists. A zombie is dead: it will never unlock.
func ownerAlive(word uint64) bool {
	pid := int(word & lockPidMask)
	token := uint32(word >> 32)
	if pid == 0 {
		return false
	}
	if err := unix.Kill(pid, 0); errors.Is(err, unix.ESRCH) {
		return false
	}
	got, state, ok := procStat(pid)
	if !ok {
		// It existed a moment ago; if /proc has no entry now, it is gone,
		// unless there is no /proc at all (then trust kill).
		_, err := os.Stat("/proc/self/stat")
		return err != nil
	}
	if state == 'Z' || state == 'X' {
		return false
	}
	if token != 0 && got != token {
		return false // the pid was reused
	}
	return true
}

func (l robustLock) low() *uint32 { return (*uint32)(unsafe.Pointer(l.word)) }

// lock acquires the lock for an operation whose deadline is dl. A live
// owner holds the lock for microseconds, so waiting for it is part of any
// operation, even one that must not block (a deadline of 0): lock waits
// until the deadline, but at least lockPatience. A dead owner's lock is
// taken over within ownerCheckInterval. It reports whether it got the
// lock (false only if a live owner held it all that time), and whether it
// took it over from a dead owner.
func (l robustLock) lock(dl *deadline) (ok, recovered bool) {
	end := time.Now().Add(lockPatience)
	if dl.timeout > 0 {
		if at := dl.time(); at.After(end) {
			end = at
		}
	}
	return l.lockUntil(end)
}

// lockUntil acquires the lock, waiting until end at most.
func (l robustLock) lockUntil(end time.Time) (ok, recovered bool) {
	me := lockerID()
	if atomic.CompareAndSwapUint64(l.word, 0, me) {
		return true, false
	}
	for i := 0; i < lockSpins; i++ { // busy: see waitChange
		if atomic.LoadUint64(l.word) == 0 && atomic.CompareAndSwapUint64(l.word, 0, me) {
			return true, false
		}
	}
	// From here on we may have slept: take the lock with the waiters bit
	// set, since others may still be asleep.
	contended := me | lockWaiters
	for {
		v := atomic.LoadUint64(l.word)
		if v == 0 {
			if atomic.CompareAndSwapUint64(l.word, 0, contended) {
				return true, false
			}
			continue
		}
		if v&lockWaiters == 0 {
			if !atomic.CompareAndSwapUint64(l.word, v, v|lockWaiters) {
				continue
			}
			v |= lockWaiters
		}
		wait := time.Until(end)
		if wait > ownerCheckInterval {
			wait = ownerCheckInterval
		}
		woken := wait > 0 && futexWait(l.low(), uint32(v), wait)
		if !woken && atomic.LoadUint64(l.word) == v {
			// The word did not change while we slept: is its owner alive?
			if !ownerAlive(v) && atomic.CompareAndSwapUint64(l.word, v, contended) {
				return true, true
			}
		}
		if !time.Now().Before(end) {
			if atomic.CompareAndSwapUint64(l.word, 0, contended) {
				return true, false
			}
			return false, false
		}
	}
}

func (l robustLock) unlock() {
	if atomic.SwapUint64(l.word, 0)&lockWaiters != 0 {
		futexWake(l.low(), 1)
	}
}

// lockPatience is the least time an operation waits for a lock held by a
// live owner, even when the operation must not block: the owner is busy
// for microseconds, unless it is stopped (SIGSTOP, a debugger) or copying
// a huge item. Past it, the operation reports that the lock is busy (never
// that the queue is full or empty) and its caller tries again, after
// handling signals.
const lockPatience = 100 * time.Millisecond
