package gopool

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gopool/gopool/gopool/shm"
)

// State is the life cycle of a pool: Running, then Closed or Terminated;
// Closed may still go to Terminated.
type State int

const (
	Running State = iota
	Closed
	Terminated
)

// Options configure a pool.
type Options struct {
	Workers int
	// MaxTasksPerWorker retires a worker after that many tasks; 0 means never.
	MaxTasksPerWorker int
	Spec              WorkerSpec
	// KillGrace is how long Terminate waits after SIGTERM before SIGKILL.
	KillGrace time.Duration
	// ChannelRingSize is the ring size of each worker's channel (0: the
	// default of shm.NewChannel).
	ChannelRingSize int
}

// ErrNotRunning is returned by Join while the pool is still running.
var ErrNotRunning = errors.New("pool is still running")

// ErrBadWorkerCount is returned by New for fewer than one worker.
var ErrBadWorkerCount = errors.New("number of workers must be at least 1")

// Pool runs tasks on a set of worker processes.
//
// Tasks wait in the pool's queue until a worker may take them (see
// dispatchLocked), then travel down the worker's shm.Channel; results come
// up the channel and wait in their job until collected. Whoever waits for
// results (Collect, CollectNotified) reads the channels itself, so a result
// reaches the waiting thread without a hand-off between threads; when
// nobody waits, the pool's collector goroutine reads them.
type Pool struct {
	opts Options
	bell *shm.Doorbell
	load *loadMonitor

	mu      sync.Mutex
	state   State
	queue   taskQueue
	jobs    map[int64]*job
	lastJob int64
	workers map[*worker]struct{}
	live    int // workers started and not yet reaped
	open    int // jobs not sealed
	// failure, once set, is the outcome of every pending and future task.
	failure *Result
	// earlyDeaths counts the workers in a row killed before they were
	// ready (see cannotStartWorkersLocked).
	earlyDeaths int
	// notified are the notify jobs with results for CollectNotified;
	// lentNotified those whose results it lent last.
	notified     []*job
	lentNotified []*job
	// progressed: a job got results or completed since waiters last
	// looked; unlockLocked rings the doorbell so that they look again.
	progressed bool

	// taskTime is a moving average of how long a task takes: it decides how
	// many tasks a worker may hold at once (see depthLocked).
	taskTime time.Duration

	// waiters counts the threads in wait; while there are any, the
	// collector goroutine stands aside. pending counts tasks queued or
	// running (written under mu): the collector works only while there are
	// any, or while skipsDue (written under mu) says that a worker may still
	// hold a revoked task. kick wakes it when it may be needed.
	waiters   atomic.Int32
	pending   atomic.Int64
	skipsDue  atomic.Bool
	kick      chan struct{}
	lastDrain atomic.Int64 // when the channels were last read (Unix nanoseconds)

	allExited  chan struct{}
	exitedOnce sync.Once
}

// New starts a pool and its workers. If a worker cannot be started, the
// ones already started are killed and the error is returned.
func New(opts Options) (*Pool, error) {
	if opts.Workers < 1 {
		return nil, fmt.Errorf("%w, not %d", ErrBadWorkerCount, opts.Workers)
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = 250 * time.Millisecond
	}
	bell, err := shm.NewDoorbell()
	if err != nil {
		return nil, err
	}
	p := &Pool{
		opts:      opts,
		bell:      bell,
		jobs:      make(map[int64]*job),
		workers:   make(map[*worker]struct{}),
		kick:      make(chan struct{}, 1),
		allExited: make(chan struct{}),
	}
	p.load = newLoadMonitor(bell)
	runtime.SetFinalizer(p, func(p *Pool) { p.bell.Close() })
	for i := 0; i < opts.Workers; i++ {
		if err := p.addWorker(); err != nil {
			p.Terminate()
			return nil, err
		}
	}
	go p.collectLoop()
	return p, nil
}

// unlockLocked releases the lock and rings the doorbell if a job
// progressed, so that waiting threads look again.
func (p *Pool) unlockLocked() {
	ring := p.progressed
	p.progressed = false
	p.mu.Unlock()
	if ring {
		p.bell.Ring()
	}
}

func (p *Pool) needsReplacementLocked() bool {
	if p.failure != nil || p.state == Terminated {
		return false
	}
	return p.state == Running || p.queue.len() > 0 || p.open > 0
}

func (p *Pool) checkAllExitedLocked() {
	if p.live == 0 && p.state != Running {
		p.exitedOnce.Do(func() {
			close(p.allExited)
			p.load.stop()
		})
	}
}

// fail makes every queued task, and every task submitted later, finish
// with r. Tasks already running finish normally; then the workers retire.
func (p *Pool) fail(r Result) {
	p.mu.Lock()
	p.failLocked(r)
	p.dispatchLocked()
	p.unlockLocked()
}

func (p *Pool) failLocked(r Result) {
	if p.failure == nil {
		p.failure = &r
	}
	for p.queue.len() > 0 {
		p.finishLocked(p.queue.pop(), *p.failure)
	}
}

// Close stops new work: workers exit once the queue is empty and every job
// is sealed.
func (p *Pool) Close() {
	p.mu.Lock()
	if p.state != Running {
		p.mu.Unlock()
		return
	}
	p.state = Closed
	p.dispatchLocked() // lets idle workers go if there is no more work
	p.checkAllExitedLocked()
	p.unlockLocked()
}

// Terminate stops the workers at once: every unfinished task finishes with
// StatusTerminated, open jobs are sealed, each worker gets SIGTERM and, if
// it is still alive after the grace period, SIGKILL.
func (p *Pool) Terminate() {
	p.mu.Lock()
	if p.state == Terminated {
		p.mu.Unlock()
		return
	}
	p.state = Terminated
	terminated := Result{Status: StatusTerminated}
	for p.queue.len() > 0 {
		p.finishLocked(p.queue.pop(), terminated)
	}
	procs := make([]*process, 0, len(p.workers))
	for w := range p.workers {
		for _, t := range w.inflight {
			p.finishLocked(t, terminated)
		}
		w.state = workerStopping
		procs = append(procs, w.proc)
	}
	for _, j := range p.jobs {
		p.sealLocked(j)
	}
	p.checkAllExitedLocked()
	p.unlockLocked()
	for _, proc := range procs {
		proc.signal(syscall.SIGTERM)
	}
	graceOver := make(chan struct{})
	time.AfterFunc(p.opts.KillGrace, func() { close(graceOver) })
	go func() {
		for _, proc := range procs {
			select {
			case <-proc.exited:
			case <-graceOver:
				proc.signal(syscall.SIGKILL)
			}
		}
	}()
}

// Release terminates the pool and closes the files its workers inherit.
// The doorbell is unmapped once the pool is garbage: a thread may still be
// inside Collect.
func (p *Pool) Release() {
	p.Terminate()
	for _, f := range p.opts.Spec.Inherit {
		f.Close()
	}
}

// Join waits up to timeout for every worker to have exited. It returns
// whether they all have. It is an error while the pool is running.
func (p *Pool) Join(timeout time.Duration) (bool, error) {
	p.mu.Lock()
	st := p.state
	p.mu.Unlock()
	if st == Running {
		return false, ErrNotRunning
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.allExited:
		return true, nil
	case <-t.C:
		return false, nil
	}
}

// WorkerInfo describes one worker for introspection.
type WorkerInfo struct {
	Pid       int
	TasksDone int
	// Job and Index name the task the worker runs; Job is 0 when idle.
	Job   int64
	Index int64
}

// Workers describes the live workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		if w.state == workerDead {
			continue
		}
		info := WorkerInfo{Pid: w.proc.pid, TasksDone: w.tasksDone}
		if len(w.inflight) > 0 {
			info.Job, info.Index = w.inflight[0].job.id, w.inflight[0].index
		}
		out = append(out, info)
	}
	return out
}

// Queued returns how many tasks wait for a worker.
func (p *Pool) Queued() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queue.len()
}
