package gopool

import (
	"errors"
	"fmt"
	"time"
)

// Status is the outcome of one task. StatusOK and StatusError come from the
// worker (the payload is its encoding of the value or the error); the
// others come from the core.
type Status byte

const (
	StatusOK    Status = 0
	StatusError Status = 1
	// StatusWorkerLost: the worker died while running the task; Result.Pid
	// and Result.Exit say which and how.
	StatusWorkerLost Status = 2
	// StatusTerminated: the pool was terminated before the task finished.
	StatusTerminated Status = 3
	// StatusInitFailed: a worker's initialisation failed; the payload is the
	// worker's encoding of that error.
	StatusInitFailed Status = 4
	// StatusBroken: no worker could be started; the payload is the reason.
	StatusBroken Status = 5
	// StatusCancelled: the job was cancelled before the task finished.
	StatusCancelled Status = 6
	// StatusTimedOut: the task ran longer than its job's time limit; its
	// worker (Result.Pid) was killed.
	StatusTimedOut Status = 7
)

// Result is one finished task. Index counts the tasks of a job from 0 in
// submission order. Pid and Exit are set for StatusWorkerLost, Pid for
// StatusTimedOut.
type Result struct {
	Index   int64
	Status  Status
	Pid     int
	Exit    ExitStatus
	Payload []byte
}

// JobResults are results of one job, as CollectNotified lends them.
type JobResults struct {
	Job     int64
	Results []Result
	// Done: the job is complete and these are its last results; once
	// they are acknowledged, the job is forgotten.
	Done bool
}

// ErrUnknownJob is returned for a job id the pool does not (or no longer) know.
var ErrUnknownJob = errors.New("unknown job")

// ErrJobSealed is returned when tasks are added to a sealed job.
var ErrJobSealed = errors.New("job is sealed")

// A Payload is a task's bytes, possibly in several parts: the worker gets
// them as one message, the parts one after the other. A large argument
// can so travel without being copied into one piece first.
type Payload [][]byte

type task struct {
	job     *job
	index   int64
	seq     uint64 // the worker's sequence number for it, once dispatched
	payload Payload
	done    bool
}

// job groups the tasks of one submission (an apply, a map, an imap) and
// holds their results until they are collected.
//
// Its life: open (tasks may be added) until sealed; complete once sealed
// with every task finished; forgotten once complete and collected, or
// discarded.
type job struct {
	id        int64
	notify    bool          // results are collected by CollectNotified
	timeout   time.Duration // per-task time limit; 0 for none
	soft      time.Duration // per-task soft time limit; 0 for none
	sealed    bool
	submitted int64
	finished  int64
	discarded bool
	ready     []Result // finished, not yet acknowledged
	lent      int      // the first lent results of ready were lent by Collect
	acked     int64    // results acknowledged so far
	announced bool     // on p.notified, for a notify job
}

func (j *job) complete() bool { return j.sealed && j.finished == j.submitted }

// JobSpec describes the job Submit adds tasks to.
type JobSpec struct {
	// ID is the job to add to; 0 opens a new job.
	ID int64
	// Notify makes the new job's results go to CollectNotified instead of
	// Collect.
	Notify bool
	// Timeout above zero limits how long each of the new job's tasks may
	// run: a task still running then finishes with StatusTimedOut and its
	// worker is killed (and replaced).
	Timeout time.Duration
	// SoftTimeout above zero is a softer limit (keep it below Timeout): a
	// task still running then is told so, with SoftLimitSignal (see
	// protocol.go), and may end as it sees fit.
	SoftTimeout time.Duration
}

// Submit adds tasks to a job, opening it first if spec.ID is 0, and seals
// it if seal is set; it returns the job's id. Task indices follow the job's
// earlier tasks. If the pool has failed or was terminated, the tasks finish
// at once with that outcome. The payloads must not change afterwards.
func (p *Pool) Submit(spec JobSpec, payloads []Payload, seal bool) (int64, error) {
	p.mu.Lock()
	var j *job
	if spec.ID == 0 {
		p.lastJob++
		j = &job{id: p.lastJob, notify: spec.Notify, timeout: spec.Timeout, soft: spec.SoftTimeout}
		p.jobs[j.id] = j
		p.open++
	} else {
		var ok bool
		if j, ok = p.jobs[spec.ID]; !ok || j.sealed {
			p.mu.Unlock()
			if !ok {
				return 0, ErrUnknownJob
			}
			return 0, fmt.Errorf("job %d: %w", spec.ID, ErrJobSealed)
		}
	}
	for _, payload := range payloads {
		t := &task{job: j, index: j.submitted, payload: payload}
		j.submitted++
		p.pending.Add(1)
		p.enqueueLocked(t, false)
	}
	if seal {
		p.sealLocked(j)
	}
	p.drainLocked() // a thread that submits reads results too: workers free up for the new tasks
	p.dispatchLocked()
	p.unlockLocked()
	p.load.sample()
	if p.waiters.Load() == 0 {
		p.kickCollector() // nobody waits to read the results
	}
	return j.id, nil
}

// Run submits tasks as a new sealed job, then collects it like Collect:
// one call for a task whose result the caller waits for. The collector
// goroutine is not woken for it.
func (p *Pool) Run(spec JobSpec, payloads []Payload, take Taker, timeout time.Duration) (job int64, results []Result, done, refused bool, err error) {
	p.waiters.Add(1)
	defer p.leaveWait()
	spec.ID = 0
	if job, err = p.Submit(spec, payloads, true); err != nil {
		return 0, nil, false, false, err
	}
	results, done, refused, err = p.Collect(job, 0, take, timeout)
	return job, results, done, refused, err
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
	p.dispatchLocked() // a closing pool may now let idle workers go
	p.unlockLocked()
	return nil
}

func (p *Pool) sealLocked(j *job) {
	if j.sealed {
		return
	}
	j.sealed = true
	p.open--
	p.progressedLocked(j)
}

// finishLocked records the outcome of t, once. r.Index is set here.
func (p *Pool) finishLocked(t *task, r Result) {
	if t.done {
		return
	}
	t.done = true
	t.payload = nil
	p.pending.Add(-1)
	j := t.job
	j.finished++
	if !j.discarded {
		r.Index = t.index
		j.ready = append(j.ready, r)
	}
	p.progressedLocked(j)
}

// progressedLocked notes that j has new results or is complete.
func (p *Pool) progressedLocked(j *job) {
	if len(j.ready) == 0 && !j.complete() {
		return
	}
	p.progressed = true
	if j.notify && !j.announced && !j.discarded {
		j.announced = true
		p.notified = append(p.notified, j)
	}
}

// Collecting is two-phase, so that a caller that fails while it handles
// results (an interrupt, a result it cannot decode) loses none: Collect
// lends results, which stay at the front of their job until the caller
// acknowledges them. An acknowledgement is the total number of the job's
// results the caller has handled so far, so sending it twice is harmless;
// results lent and not acknowledged are lent again.

// A Taker says whether the caller takes a job's results (r == nil, asked
// first, once per job), then each result in turn: for instance, whether it
// fits in the caller's buffer. A nil Taker takes all.
type Taker func(job int64, r *Result) bool

// Collect acknowledges that the caller has handled the job's first
// handled results, then lends the job's results that take accepts, from
// the first, in the order they finished, waiting up to timeout for one.
// done reports that the job is complete and these are its last results:
// once they are acknowledged (Ack), the job is forgotten and collecting it
// again is ErrUnknownJob. refused reports that take accepted none of the
// results there were. A timeout returns nothing and no error.
func (p *Pool) Collect(jobID, handled int64, take Taker, timeout time.Duration) (results []Result, done, refused bool, err error) {
	p.mu.Lock()
	if j, ok := p.jobs[jobID]; ok {
		p.ackLocked(j, handled)
	}
	p.mu.Unlock()
	p.wait(timeout, func() bool {
		j, ok := p.jobs[jobID]
		if !ok {
			err = ErrUnknownJob
			return true
		}
		results, done, refused = p.lendLocked(j, take)
		return len(results) > 0 || done || refused
	})
	return results, done, refused, err
}

// Ack acknowledges that the caller has handled the job's first handled
// results. A job already forgotten (a complete job is forgotten when its
// last results are lent and none is left unacknowledged) is left alone.
func (p *Pool) Ack(jobID, handled int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if j, ok := p.jobs[jobID]; ok {
		p.ackLocked(j, handled)
	}
}

// ackLocked drops the lent results among j's first handled ones.
func (p *Pool) ackLocked(j *job, handled int64) {
	n := int(max(0, min(handled-j.acked, int64(j.lent))))
	clear(j.ready[:n])
	j.ready = j.ready[n:]
	j.acked += int64(n)
	j.lent -= n
	if len(j.ready) == 0 {
		j.ready = nil
		if j.complete() {
			delete(p.jobs, j.id)
		}
	}
}

// lendLocked lends j's results that take accepts; refused reports that
// it accepted none of those there were. It forgets a complete job that
// has none left.
func (p *Pool) lendLocked(j *job, take Taker) (results []Result, done, refused bool) {
	j.lent = 0
	if take != nil && !take(j.id, nil) {
		return nil, false, true
	}
	n := 0
	for n < len(j.ready) && (take == nil || take(j.id, &j.ready[n])) {
		n++
	}
	j.lent = n
	if n == 0 && len(j.ready) > 0 {
		return nil, false, true
	}
	if j.complete() && n == len(j.ready) {
		if n == 0 {
			delete(p.jobs, j.id)
		}
		return j.ready[:n:n], true, false
	}
	return j.ready[:n:n], false, false
}

// CollectNotified acknowledges every result the previous call lent if ack
// is set, then lends the results of notify jobs that take accepts,
// waiting up to timeout for one. Each job appears at most once; what take
// refuses waits for the next call. refused reports that take accepted
// nothing there was. One caller at a time.
func (p *Pool) CollectNotified(ack bool, take Taker, timeout time.Duration) (out []JobResults, refused bool) {
	p.mu.Lock()
	for _, j := range p.lentNotified {
		if ack && !j.discarded {
			p.ackLocked(j, j.acked+int64(j.lent))
		}
		j.lent = 0
	}
	p.lentNotified = p.lentNotified[:0]
	p.mu.Unlock()
	p.wait(timeout, func() bool {
		keep := p.notified[:0]
		for _, j := range p.notified {
			if j.discarded {
				j.announced = false
				continue
			}
			results, done, none := p.lendLocked(j, take)
			if none {
				keep = append(keep, j)
				continue
			}
			out = append(out, JobResults{Job: j.id, Results: results, Done: done})
			p.lentNotified = append(p.lentNotified, j)
			if len(results) < len(j.ready) {
				keep = append(keep, j) // the rest did not fit
			} else {
				j.announced = false
			}
		}
		p.notified = keep
		refused = len(out) == 0 && len(keep) > 0
		return len(out) > 0 || refused
	})
	return out, refused
}

// Notify acknowledges that the caller has handled the job's first handled
// results, then sends the job's results to CollectNotified from now on
// (a result an asyncio task awaits is delivered so).
func (p *Pool) Notify(jobID, handled int64) error {
	p.mu.Lock()
	j, ok := p.jobs[jobID]
	if !ok {
		p.mu.Unlock()
		return ErrUnknownJob
	}
	p.ackLocked(j, handled)
	j.lent = 0
	j.notify = true
	p.progressedLocked(j)
	p.unlockLocked()
	return nil
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
	p.sealLocked(j)
	delete(p.jobs, jobID)
	p.dispatchLocked() // a closing pool may now let idle workers go
	p.unlockLocked()
}
