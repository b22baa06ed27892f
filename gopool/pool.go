// Package gopool is the core of gopool: it starts worker processes, hands
// them tasks, collects their results and replaces them when they die or
// retire. Payloads are opaque bytes: the core knows nothing of what runs in
// a worker, only the frame protocol of frame.go.
package gopool

import (
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"
)

// State is the life cycle of a pool: Running, then Closed or Terminated;
// Closed may still go to Terminated.
type State int

const (
	Running State = iota
	Closed
	Terminated
)

func (s State) String() string {
	return [...]string{"RUN", "CLOSE", "TERMINATE"}[s]
}

// Status is the outcome of one task. StatusOK and StatusError come from the
// worker (its payload is the worker's encoding of the value or the error);
// the others come from the core.
type Status byte

const (
	StatusOK Status = iota
	StatusError
	// StatusWorkerLost: the worker died while holding the task. Payload:
	// "pid exitcode" in ASCII (exitcode is minus the signal number).
	StatusWorkerLost
	// StatusTerminated: the pool was terminated before the task finished.
	StatusTerminated
	// StatusInitFailed: a worker's initialisation failed; the payload is the
	// worker's encoding of that error.
	StatusInitFailed
	// StatusBroken: no worker could be started; the payload is the reason.
	StatusBroken
	// StatusCancelled: the job was cancelled before the task finished.
	StatusCancelled
	// StatusTimedOut: the task ran longer than its job's time limit; its
	// worker was killed. Payload: "pid" in ASCII.
	StatusTimedOut
)

// Result is one finished task. Index counts the tasks of a job from 0 in
// submission order.
type Result struct {
	Index   int64
	Status  Status
	Payload []byte
}

// Options configure a pool.
type Options struct {
	Workers int
	// MaxTasksPerWorker retires a worker after that many tasks; 0 means never.
	MaxTasksPerWorker int
	Spec              WorkerSpec
	// KillGrace is how long Terminate waits after SIGTERM before SIGKILL.
	KillGrace time.Duration
}

// ErrUnknownJob is returned for a job id the pool does not (or no longer) know.
var ErrUnknownJob = errors.New("unknown job")

// ErrNotRunning is returned by Join while the pool is still running.
var ErrNotRunning = errors.New("pool is still running")

type task struct {
	job     *job
	index   int64
	tag     uint64
	payload []byte
	done    bool
}

// job groups the tasks of one submission (an apply, a map, an imap) and
// holds their results until they are collected.
type job struct {
	id        int64
	notify    bool          // announce completion on the event list
	timeout   time.Duration // per-task time limit; 0 for none
	sealed    bool          // no more tasks will be added
	submitted int64
	finished  int64
	discarded bool
	ready     []Result      // finished, not yet collected
	signal    chan struct{} // poked whenever ready grows or the job completes
}

func (j *job) complete() bool { return j.sealed && j.finished == j.submitted }

func (j *job) poke() {
	select {
	case j.signal <- struct{}{}:
	default:
	}
}

// Pool runs tasks on a set of worker processes.
type Pool struct {
	opts Options

	mu      sync.Mutex
	state   State
	queue   taskQueue
	jobs    map[int64]*job
	lastJob int64
	lastTag uint64
	workers map[*worker]struct{}
	live    int // workers started and not yet reaped
	open    int // jobs not sealed
	// failure, once set, fails every pending and future task.
	failure *Result

	// taskTime is a moving average of how long a task takes: it decides how
	// many tasks a worker may hold at once (see depthLocked).
	taskTime time.Duration

	events      []int64
	eventSignal chan struct{}
	allExited   chan struct{}
	exitedOnce  sync.Once
}

// New starts a pool and its workers. If a worker cannot be started, the
// ones already started are killed and the error is returned.
func New(opts Options) (*Pool, error) {
	if opts.Workers < 1 {
		return nil, fmt.Errorf("number of workers must be at least 1, not %d", opts.Workers)
	}
	if opts.KillGrace <= 0 {
		opts.KillGrace = 250 * time.Millisecond
	}
	p := &Pool{
		opts:        opts,
		jobs:        make(map[int64]*job),
		workers:     make(map[*worker]struct{}),
		eventSignal: make(chan struct{}, 1),
		allExited:   make(chan struct{}),
	}
	for i := 0; i < opts.Workers; i++ {
		if err := p.addWorker(); err != nil {
			p.Terminate()
			return nil, err
		}
	}
	return p, nil
}

func lostPayload(proc *process) []byte {
	return []byte(fmt.Sprintf("%d %d", proc.pid, proc.exit.ExitCode()))
}

func (p *Pool) needsReplacementLocked() bool {
	if p.failure != nil || p.state == Terminated {
		return false
	}
	return p.state == Running || p.queue.len() > 0 || p.open > 0
}

func (p *Pool) checkAllExited() {
	if p.live == 0 && p.state != Running {
		p.exitedOnce.Do(func() { close(p.allExited) })
	}
}

// finishLocked records the result of t, once.
func (p *Pool) finishLocked(t *task, status Status, payload []byte) {
	if t.done {
		return
	}
	t.done = true
	j := t.job
	j.finished++
	if !j.discarded {
		j.ready = append(j.ready, Result{Index: t.index, Status: status, Payload: payload})
	}
	p.jobProgressed(j)
}

func (p *Pool) jobProgressed(j *job) {
	j.poke()
	if j.notify && j.complete() {
		p.events = append(p.events, j.id)
		select {
		case p.eventSignal <- struct{}{}:
		default:
		}
	}
}

// fail makes every queued task, and every task submitted later, finish
// with r. Tasks already running finish normally; then the workers retire.
func (p *Pool) fail(r Result) {
	p.mu.Lock()
	p.failLocked(r)
	writers := p.dispatchLocked()
	p.mu.Unlock()
	p.deliver(writers)
}

func (p *Pool) failLocked(r Result) {
	if p.failure == nil {
		p.failure = &r
	}
	p.failQueuedLocked(p.failure.Status, p.failure.Payload)
}

func (p *Pool) failQueuedLocked(status Status, payload []byte) {
	for p.queue.len() > 0 {
		p.finishLocked(p.queue.pop(), status, payload)
	}
}

// NewJob opens a job to which tasks can be submitted until it is sealed.
// A job with notify set is announced by NextEvents once complete.
//
// A timeout above zero limits how long each of the job's tasks may run: a
// task still running then finishes with StatusTimedOut and its worker is
// killed (and replaced).
func (p *Pool) NewJob(notify bool, timeout time.Duration) int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastJob++
	j := &job{id: p.lastJob, notify: notify, timeout: timeout, signal: make(chan struct{}, 1)}
	p.jobs[j.id] = j
	p.open++
	return j.id
}

// Submit appends tasks to an open job. Their indices follow the job's
// earlier tasks. If the pool has failed or was terminated, the tasks finish
// at once with that outcome.
func (p *Pool) Submit(jobID int64, payloads [][]byte) error {
	p.mu.Lock()
	j, ok := p.jobs[jobID]
	if !ok || j.sealed {
		p.mu.Unlock()
		if !ok {
			return ErrUnknownJob
		}
		return fmt.Errorf("job %d is sealed", jobID)
	}
	for _, payload := range payloads {
		p.lastTag++
		t := &task{job: j, index: j.submitted, tag: p.lastTag, payload: payload}
		j.submitted++
		switch {
		case p.state == Terminated:
			p.finishLocked(t, StatusTerminated, nil)
		case p.failure != nil:
			p.finishLocked(t, p.failure.Status, p.failure.Payload)
		default:
			p.queue.push(t)
		}
	}
	writers := p.dispatchLocked()
	p.mu.Unlock()
	p.deliver(writers)
	return nil
}

// Seal says no more tasks will be added to the job.
func (p *Pool) Seal(jobID int64) error {
	p.mu.Lock()
	j, ok := p.jobs[jobID]
	if !ok {
		p.mu.Unlock()
		return ErrUnknownJob
	}
	p.sealLocked(j)
	writers := p.dispatchLocked() // a closing pool may now let idle workers go
	p.mu.Unlock()
	p.deliver(writers)
	return nil
}

func (p *Pool) sealLocked(j *job) {
	if j.sealed {
		return
	}
	j.sealed = true
	p.open--
	p.jobProgressed(j)
}

// Collect takes up to max finished results of a job, in the order they
// finished, waiting up to timeout for the first one. done reports that the
// job is complete and every result has been taken; the job is then
// forgotten. A timeout returns no results and no error.
func (p *Pool) Collect(jobID int64, max int, timeout time.Duration) (results []Result, done bool, err error) {
	var timer *time.Timer
	for {
		p.mu.Lock()
		j, ok := p.jobs[jobID]
		if !ok {
			p.mu.Unlock()
			return nil, false, ErrUnknownJob
		}
		if n := len(j.ready); n > 0 {
			if max <= 0 || max > n {
				max = n
			}
			results = append([]Result(nil), j.ready[:max]...)
			j.ready = j.ready[max:]
		}
		if j.complete() && len(j.ready) == 0 {
			delete(p.jobs, jobID)
			done = true
		}
		p.mu.Unlock()
		if len(results) > 0 || done {
			return results, done, nil
		}
		if timeout <= 0 {
			return nil, false, nil
		}
		if timer == nil {
			if spinFor(j.signal, collectSpin) {
				continue
			}
			timer = time.NewTimer(timeout)
			defer timer.Stop()
		}
		select {
		case <-j.signal:
		case <-timer.C:
			return nil, false, nil
		}
	}
}

// collectSpin is how long Collect polls before it parks. A caller of
// Collect is usually a Python thread inside a cgo call, and waking a parked
// goroutine locked to such a thread costs tens of microseconds (a hand-off
// between OS threads); a short task's result usually arrives sooner.
const collectSpin = 50 * time.Microsecond

// spinFor polls signal for up to d and reports whether it fired.
func spinFor(signal <-chan struct{}, d time.Duration) bool {
	until := time.Now().Add(d)
	for time.Now().Before(until) {
		select {
		case <-signal:
			return true
		default:
		}
	}
	return false
}

// Discard forgets a job whose results nobody will collect. Its tasks still
// run; their results are dropped.
func (p *Pool) Discard(jobID int64) {
	p.mu.Lock()
	j, ok := p.jobs[jobID]
	if !ok {
		p.mu.Unlock()
		return
	}
	j.discarded = true
	j.ready = nil
	j.notify = false
	p.sealLocked(j)
	delete(p.jobs, jobID)
	writers := p.dispatchLocked() // a closing pool may now let idle workers go
	p.mu.Unlock()
	p.deliver(writers)
}

// NextEvents returns the ids of notify jobs completed since the last call,
// waiting up to timeout for the first.
func (p *Pool) NextEvents(timeout time.Duration) []int64 {
	deadline := time.Now().Add(timeout)
	for {
		p.mu.Lock()
		ev := p.events
		p.events = nil
		p.mu.Unlock()
		left := time.Until(deadline)
		if len(ev) > 0 || left <= 0 {
			return ev
		}
		select {
		case <-p.eventSignal:
		case <-time.After(left):
		}
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
	writers := p.dispatchLocked() // lets idle workers go if there is no more work
	p.checkAllExited()
	p.mu.Unlock()
	p.deliver(writers)
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
	p.failQueuedLocked(StatusTerminated, nil)
	for w := range p.workers {
		for _, t := range w.inflight {
			p.finishLocked(t, StatusTerminated, nil)
		}
	}
	for _, j := range p.jobs {
		p.sealLocked(j)
	}
	writers := p.dispatchLocked() // lets idle workers go
	procs := make([]*process, 0, len(p.workers))
	for w := range p.workers {
		procs = append(procs, w.proc)
	}
	p.checkAllExited()
	p.mu.Unlock()
	p.deliver(writers)
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
	select {
	case <-p.allExited:
		return true, nil
	case <-time.After(timeout):
		return false, nil
	}
}

// State returns the pool's life-cycle state.
func (p *Pool) State() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

// WorkerInfo describes one worker for introspection.
type WorkerInfo struct {
	Pid       int
	TasksDone int
	// Job and Index name the task the worker holds; Job is 0 when idle.
	Job   int64
	Index int64
}

// Workers describes the live workers.
func (p *Pool) Workers() []WorkerInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]WorkerInfo, 0, len(p.workers))
	for w := range p.workers {
		if w.dead {
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
