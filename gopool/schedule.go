package gopool

import (
	"time"

	"github.com/gopool/gopool/gopool/shm"
)

// Scheduling. A worker runs its tasks one after the other, in the order
// they were written to it. When tasks are short, it is given a few ahead of
// time (pipelining), so that it never waits for the core between two
// tasks; when they are long, it holds one at a time, so that no task waits
// behind a long one while another worker is free.

const (
	// maxDepth bounds how many tasks a worker holds at once.
	maxDepth = 8
	// pipelineBudget is how much queued work a worker may hold beyond the
	// task it runs: the most a task can be delayed by being given early.
	pipelineBudget = 2 * time.Millisecond
	// writeWait is how long a writer goroutine sleeps at most before it
	// looks again at a worker whose channel has no room.
	writeWait = 100 * time.Millisecond
)

// depthLocked is how many tasks a worker may hold at once, from the
// average task time: up to maxDepth for very short tasks, one for tasks of
// pipelineBudget or more, and one until a task time has been measured.
func (p *Pool) depthLocked() int {
	if p.taskTime <= 0 {
		return 1
	}
	d := int(pipelineBudget / p.taskTime)
	return max(1, min(d, maxDepth))
}

func (p *Pool) recordTaskTimeLocked(d time.Duration) {
	if p.taskTime == 0 {
		p.taskTime = d
	} else {
		p.taskTime += (d - p.taskTime) / 8
	}
}

// canTake reports whether w may be given one more task.
func (w *worker) canTake(depth, maxTasks int) bool {
	if w.state != workerRunning || len(w.inflight) >= depth {
		return false
	}
	return maxTasks <= 0 || w.assigned < maxTasks
}

// dispatchLocked gives queued tasks to workers, idle ones first, writes
// them to the workers' channels, and lets idle workers go once the pool has
// no more work for them.
func (p *Pool) dispatchLocked() {
	depth := p.depthLocked()
	for p.queue.len() > 0 {
		w := p.leastBusyLocked(depth)
		if w == nil {
			break
		}
		t := p.queue.pop()
		w.nextSeq++
		t.seq = w.nextSeq
		w.inflight = append(w.inflight, t)
		if len(w.inflight) == 1 {
			p.startHeadLocked(w, time.Now())
		}
		w.outbox = append(w.outbox, t)
		w.assigned++
		p.writeLocked(w)
	}
	if p.queue.len() == 0 && p.noMoreWorkLocked() {
		for w := range p.workers {
			if len(w.inflight) == 0 && w.state == workerRunning {
				p.stopLocked(w)
			}
		}
	}
}

// leastBusyLocked returns the worker holding the fewest tasks among those
// that may take one more, or nil. Among idle workers it prefers the one
// that answered last: it may still be spinning for work, while the others
// sleep and take tens of microseconds to wake.
func (p *Pool) leastBusyLocked(depth int) *worker {
	var best *worker
	for w := range p.workers {
		if !w.canTake(depth, p.opts.MaxTasksPerWorker) {
			continue
		}
		if best == nil || len(w.inflight) < len(best.inflight) ||
			(len(w.inflight) == len(best.inflight) && w.since.After(best.since)) {
			best = w
		}
	}
	return best
}

func (p *Pool) noMoreWorkLocked() bool {
	return p.state == Terminated || p.failure != nil || (p.state == Closed && p.open == 0)
}

// stopLocked tells a worker to exit once it has run what it holds.
func (p *Pool) stopLocked(w *worker) {
	if w.state == workerRunning {
		w.state = workerStopping
	}
	p.writeLocked(w)
}

// writeLocked writes w's outbox to its channel, then the stop message if
// it is stopping, as far as the channel has room; a writer goroutine
// finishes what does not fit.
func (p *Pool) writeLocked(w *worker) {
	if w.writerActive || !p.pumpLocked(w) {
		return
	}
	w.writerActive = true
	go p.writeLoop(w)
}

// pumpLocked writes what it can and reports whether something still waits
// for room in the channel.
func (p *Pool) pumpLocked(w *worker) bool {
	if w.state == workerDead {
		return false
	}
	for {
		switch {
		case w.out.Busy():
			w.out.Continue()
			if w.out.Busy() {
				return true
			}
		case len(w.outbox) > 0:
			t := w.outbox[0]
			if !w.out.Start(shm.MessageHeader{Kind: MsgTask, Tag: t.seq}, t.payload...) {
				return true
			}
			w.outbox[0] = nil
			w.outbox = w.outbox[1:]
		case w.state == workerStopping && !w.stopSent:
			if !w.out.Start(shm.MessageHeader{Kind: MsgStop}, nil) {
				return true
			}
			w.stopSent = true
		default:
			return false
		}
	}
}

// writeLoop writes, as room appears, what did not fit in w's channel.
func (p *Pool) writeLoop(w *worker) {
	for {
		p.mu.Lock()
		pending := p.pumpLocked(w)
		need := w.out.Needed()
		if !pending {
			w.writerActive = false
			if w.state == workerDead {
				w.ch.Close() // workerDied left it to us
			}
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		w.ch.Down.WaitSpace(need, writeWait, 0)
	}
}

// requeueLocked takes t back from w and puts it at the front of the queue
// (or fails it, if the pool has failed). t never began.
func (p *Pool) requeueLocked(w *worker, t *task) {
	w.forget(t)
	if !t.done {
		p.enqueueLocked(t, true)
	}
}

// enqueueLocked puts t in the queue (at its front if front is set), or
// finishes it at once if the pool was terminated or has failed.
func (p *Pool) enqueueLocked(t *task, front bool) {
	switch {
	case p.state == Terminated:
		p.finishLocked(t, Result{Status: StatusTerminated})
	case p.failure != nil:
		p.finishLocked(t, *p.failure)
	case front:
		p.queue.pushFront(t)
	default:
		p.queue.push(t)
	}
}

// forget removes t from w's in-flight tasks and outbox.
func (w *worker) forget(t *task) {
	w.inflight = remove(w.inflight, t)
	w.outbox = remove(w.outbox, t)
}

func remove(tasks []*task, t *task) []*task {
	for i, v := range tasks {
		if v == t {
			return append(tasks[:i], tasks[i+1:]...)
		}
	}
	return tasks
}

// startHeadLocked notes that w's first in-flight task starts now, and arms
// the time limits of its job, if it has any: they count from when the
// worker begins the task (a worker still starting has not), which the
// core learns by looking at the channel every beginPoll.
func (p *Pool) startHeadLocked(w *worker, now time.Time) {
	w.since = now
	w.stopTimers()
	if len(w.inflight) == 0 {
		return
	}
	t := w.inflight[0]
	if t.job.timeout <= 0 && t.job.soft <= 0 {
		return
	}
	if w.ch.Started() < t.seq {
		w.limit = time.AfterFunc(beginPoll, func() { p.limitsWhenBegun(w, t) })
		return
	}
	if t.job.timeout > 0 {
		w.limit = time.AfterFunc(t.job.timeout, func() { p.timedOut(w, t) })
	}
	if t.job.soft > 0 {
		w.soft = time.AfterFunc(t.job.soft, func() { p.softTimedOut(w, t) })
	}
}

// beginPoll is how often the core looks whether a worker has begun the
// task whose time limits wait for that.
const beginPoll = 5 * time.Millisecond

// limitsWhenBegun arms t's time limits once w has begun it.
func (p *Pool) limitsWhenBegun(w *worker, t *task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.state != workerDead && len(w.inflight) > 0 && w.inflight[0] == t && !t.done {
		p.startHeadLocked(w, w.since)
	}
}

func (w *worker) stopTimers() {
	for _, timer := range []**time.Timer{&w.limit, &w.soft} {
		if *timer != nil {
			(*timer).Stop()
			*timer = nil
		}
	}
}
