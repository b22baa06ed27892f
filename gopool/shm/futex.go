package shm

import (
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// deadline is an operation's time limit. It reads the clock only when the
// operation first has to wait: that costs more than an uncontended put.
type deadline struct {
	timeout time.Duration
	at      time.Time
	set     bool
}

func newDeadline(timeout time.Duration) *deadline { return &deadline{timeout: timeout} }

// time returns the deadline, counting the timeout from the first call.
func (d *deadline) time() time.Time {
	if !d.set {
		d.at = time.Now().Add(d.timeout)
		d.set = true
	}
	return d.at
}

// expired reports whether the deadline has passed.
func (d *deadline) expired() bool {
	return d.timeout <= 0 || !time.Now().Before(d.time())
}

// Futex operations on shared memory: not FUTEX_PRIVATE_FLAG, since the
// word is mapped by several processes.
const (
	futexWaitOp = 0 // FUTEX_WAIT
	futexWakeOp = 1 // FUTEX_WAKE
)

// futexWait sleeps while *addr == val, for d at most. It reports false if
// it timed out, true otherwise (woken, value changed, or interrupted).
func futexWait(addr *uint32, val uint32, d time.Duration) bool {
	ts := unix.NsecToTimespec(int64(d))
	_, _, errno := unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWaitOp,
		uintptr(val), uintptr(unsafe.Pointer(&ts)), 0, 0)
	return errno != unix.ETIMEDOUT
}

// futexWake wakes up to n sleepers on addr.
func futexWake(addr *uint32, n int) {
	_, _, _ = unix.Syscall6(unix.SYS_FUTEX, uintptr(unsafe.Pointer(addr)), futexWakeOp, uintptr(n), 0, 0, 0)
}

// waitChange waits until *addr != val or the deadline passes, spinning for
// spin first (a peer usually answers within microseconds, far sooner than
// a sleep and wake-up take). flag is the sleepers' flag of addr: set before
// sleeping, so that whoever changes *addr knows to wake us (see wakeAll).
// It reports whether *addr changed.
func waitChange(addr *uint32, val uint32, flag *uint32, dl *deadline, spin time.Duration) bool {
	if atomic.LoadUint32(addr) != val {
		return true
	}
	if dl.timeout <= 0 {
		return false
	}
	deadline := dl.time()
	if spin > 0 {
		// Busy-wait: a goroutine running a call from Python is locked to
		// its thread, and runtime.Gosched would hand it between threads.
		spinEnd := time.Now().Add(spin)
		if spinEnd.After(deadline) {
			spinEnd = deadline
		}
		for {
			for i := 0; i < 64; i++ {
				if atomic.LoadUint32(addr) != val {
					return true
				}
			}
			if !time.Now().Before(spinEnd) {
				break
			}
		}
	}
	for {
		wait := time.Until(deadline)
		if wait <= 0 {
			return atomic.LoadUint32(addr) != val
		}
		atomic.StoreUint32(flag, 1)
		if atomic.LoadUint32(addr) != val {
			return true
		}
		futexWait(addr, val, wait)
		if atomic.LoadUint32(addr) != val {
			return true
		}
	}
}

// wakeAll wakes every sleeper of waitChange on addr, if its flag says there
// may be any. Call it after changing *addr.
func wakeAll(addr *uint32, flag *uint32) {
	if atomic.LoadUint32(flag) != 0 && atomic.SwapUint32(flag, 0) != 0 {
		futexWake(addr, 1<<30)
	}
}
