package gopool

import "time"

// Cancel cancels a job: its tasks that have not begun never will, and
// those running are stopped by killing their workers (which are replaced).
// All of them finish with StatusCancelled. Tasks already finished keep
// their results. It returns how many tasks it cancelled.
//
// A task already written to a worker's channel is revoked (see
// shm.Channel): the worker skips it if it has not begun it. One race
// remains: a worker that finishes a cancelled task and begins its next one
// (of another job) between the core's look and its kill takes that next
// task down with it (StatusWorkerLost).
func (p *Pool) Cancel(jobID int64) (int, error) {
	return p.cancel(jobID, true)
}

// CancelPending cancels the job's tasks that have not begun, exactly as
// Cancel does, and leaves those running alone: they finish normally. It
// returns how many tasks it cancelled; the job takes no more tasks.
func (p *Pool) CancelPending(jobID int64) (int, error) {
	return p.cancel(jobID, false)
}

func (p *Pool) cancel(jobID int64, running bool) (int, error) {
	p.mu.Lock()
	j, ok := p.jobs[jobID]
	if !ok {
		p.mu.Unlock()
		return 0, ErrUnknownJob
	}
	cancelled := 0
	cancel := func(t *task) {
		if !t.done {
			cancelled++
			p.finishLocked(t, Result{Status: StatusCancelled})
		}
	}
	p.queue.removeJob(j, cancel)
	for w := range p.workers {
		p.cancelOnWorkerLocked(w, j, cancel, running)
	}
	p.sealLocked(j)
	p.dispatchLocked()
	p.unlockLocked()
	if p.waiters.Load() == 0 && p.skipsDue.Load() {
		p.kickCollector() // to read the skips of the revoked tasks
	}
	return cancelled, nil
}

// cancelOnWorkerLocked cancels j's tasks held by w: those not yet written
// leave it, those written are revoked, and if it runs one (and running is
// set), it is killed.
func (p *Pool) cancelOnWorkerLocked(w *worker, j *job, cancel func(*task), running bool) {
	if w.state == workerDead || len(w.inflight) == 0 {
		return
	}
	head := w.inflight[0]
	for _, t := range append([]*task(nil), w.inflight...) {
		switch {
		case t.job != j || t.done:
		case contains(w.outbox, t):
			w.forget(t)
			cancel(t)
		case w.ch.Revoke(t.seq):
			cancel(t) // the worker skips it and answers MsgSkipped
			p.skipsDue.Store(true)
		case !running:
			// It began: it runs on.
		default:
			// It began: it runs now, unless its result is in already.
			p.drainWorkerLocked(w)
			if !t.done {
				cancel(t)
				p.doomLocked(w)
			}
		}
	}
	if len(w.inflight) > 0 && w.inflight[0] != head {
		p.startHeadLocked(w, time.Now())
	}
}

func contains(tasks []*task, t *task) bool {
	for _, v := range tasks {
		if v == t {
			return true
		}
	}
	return false
}
