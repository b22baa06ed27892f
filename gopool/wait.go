package gopool

import (
	"bytes"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gopool/gopool/gopool/shm"
	"golang.org/x/sys/unix"
)

// Waiting for results.
//
// Workers publish results in their channels and ring the pool's doorbell.
// A thread that waits for results (wait) reads the doorbell's count, takes
// the lock, reads every channel (drainLocked), looks for what it wants, and
// if it is not there sleeps on the doorbell until the count moves. So the
// worker's ring wakes the waiting thread itself: no goroutine stands
// between the worker and the caller (a wake-up of a goroutine locked to a
// Python thread costs tens of microseconds). Results for other jobs that a
// waiter reads wait in their jobs; anything else that gives a job results
// (a death, a cancel, terminate) rings the doorbell too.
//
// While tasks are pending and no thread waits, the collector goroutine
// reads the channels, so that workers get their next tasks and results do
// not pile up; otherwise it sleeps until kicked.

// waiterSpin is how long a waiting thread spins before it sleeps, when the
// machine has a CPU to spare: a short task's result usually comes sooner
// than a sleep and a wake-up take.
const waiterSpin = 50 * time.Microsecond

// collectorSlice bounds a collector's sleep, so that it notices the pool's end.
const collectorSlice = time.Second

// collectorDelay: while another thread has read the channels this recently
// (a thread submitting tasks reads them too), the collector stays out of
// its way: a worker holds tasks for at least that long (pipelining), and
// every wake-up of the collector would contend for the lock.
const collectorDelay = 500 * time.Microsecond

// wait runs found under the lock, after reading the workers' channels,
// until found reports true or timeout passes (at once for timeout ≤ 0).
func (p *Pool) wait(timeout time.Duration, found func() bool) {
	p.waiters.Add(1)
	defer p.leaveWait()
	var deadline time.Time
	for first := true; ; first = false {
		seen := p.bell.Count()
		p.mu.Lock()
		p.drainLocked()
		p.dispatchLocked()
		ok := found()
		p.progressed = false // other waiters were woken by the same rings
		p.mu.Unlock()
		if ok {
			return
		}
		if first {
			if timeout <= 0 {
				return
			}
			deadline = time.Now().Add(timeout)
		}
		left := time.Until(deadline)
		if left <= 0 {
			return
		}
		p.bell.Wait(seen, left, p.load.spin())
	}
}

func (p *Pool) leaveWait() {
	if p.waiters.Add(-1) == 0 && (p.pending.Load() > 0 || p.skipsDue.Load()) {
		p.kickCollector()
	}
}

func (p *Pool) kickCollector() {
	select {
	case p.kick <- struct{}{}:
	default:
	}
}

// collectLoop reads the channels while tasks are pending and no thread
// waits, until every worker has exited.
func (p *Pool) collectLoop() {
	for {
		select {
		case <-p.allExited:
			return
		default:
		}
		if p.waiters.Load() > 0 || (p.pending.Load() == 0 && !p.holdsRevoked()) {
			select {
			case <-p.kick:
			case <-p.allExited:
				return
			}
			continue
		}
		if since := time.Since(time.Unix(0, p.lastDrain.Load())); since < collectorDelay {
			time.Sleep(collectorDelay - since)
			continue
		}
		seen := p.bell.Count()
		p.mu.Lock()
		if p.waiters.Load() == 0 {
			p.drainLocked()
			p.dispatchLocked()
		}
		p.unlockLocked()
		p.load.sample()
		p.bell.Wait(seen, collectorSlice, 0)
	}
}

// holdsRevoked reports whether a worker still holds a task that a cancel
// revoked: the task is finished, but the worker is not idle again until
// its answer (MsgSkipped) is read, which may come after the last result.
func (p *Pool) holdsRevoked() bool {
	if !p.skipsDue.Load() {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		for _, t := range w.inflight {
			if t.done {
				return true
			}
		}
	}
	p.skipsDue.Store(false)
	return false
}

// loadMonitor decides whether spinning is worth it: only when the machine
// has a CPU to spare. A spinning thread on a machine with more runnable
// threads than CPUs takes CPU from the work it waits for. The number of
// runnable threads is read from /proc/loadavg (its instantaneous count),
// at most every loadSampleEvery, by the thread that asks.
type loadMonitor struct {
	bell  *shm.Doorbell
	ncpu  int
	mu    sync.Mutex
	last  time.Time
	allow atomic.Bool
	done  atomic.Bool
}

const loadSampleEvery = 10 * time.Millisecond

// workerSpin is how long a worker may spin for its next task when the
// machine has a CPU to spare.
const workerSpin = 50 * time.Microsecond

func newLoadMonitor(bell *shm.Doorbell) *loadMonitor {
	m := &loadMonitor{bell: bell, ncpu: usableCPUs()}
	m.allow.Store(true)
	bell.SetWorkerSpin(workerSpin)
	return m
}

// spin returns how long a waiter may spin now.
func (m *loadMonitor) spin() time.Duration {
	m.sample()
	if m.allow.Load() {
		return waiterSpin
	}
	return 0
}

func (m *loadMonitor) sample() {
	if !m.mu.TryLock() {
		return
	}
	defer m.mu.Unlock()
	now := time.Now()
	if now.Sub(m.last) < loadSampleEvery || m.done.Load() {
		return
	}
	m.last = now
	running, ok := runnableThreads()
	if !ok {
		return
	}
	// running counts this thread; spinning needs one more CPU than the
	// others use.
	allow := running <= m.ncpu
	if allow != m.allow.Load() {
		m.allow.Store(allow)
		if allow {
			m.bell.SetWorkerSpin(workerSpin)
		} else {
			m.bell.SetWorkerSpin(0)
		}
	}
}

func (m *loadMonitor) stop() { m.done.Store(true) }

// runnableThreads returns the number of runnable threads on the machine:
// the fourth field of /proc/loadavg is "runnable/total".
func runnableThreads() (int, bool) {
	data, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0, false
	}
	fields := bytes.Fields(data)
	if len(fields) < 4 {
		return 0, false
	}
	running, _, ok := bytes.Cut(fields[3], []byte("/"))
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(string(running))
	return n, err == nil
}

// usableCPUs returns the number of CPUs this process may run on.
func usableCPUs() int {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err == nil && set.Count() > 0 {
		return set.Count()
	}
	return 1
}
