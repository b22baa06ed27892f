package gopool

import (
	"fmt"
	"syscall"
	"time"
)

// A worker runs its tasks one after the other, in the order they were
// written to it. When tasks are short, it is given a few ahead of time
// (pipelining), so that it never waits for the core between two tasks; when
// they are long, it holds one at a time, so that no task waits behind a long
// one while another worker is free.
type worker struct {
	proc *process
	// inflight are the tasks given to the worker and not yet answered, in
	// the order they are (or will be) written. The first is the one it runs.
	inflight []*task
	// outbox are the tasks of inflight still to be written; writing is set
	// while some goroutine writes them (one writer at a time keeps the order).
	outbox  []*task
	writing bool
	// since is when the first in-flight task started, as best the core
	// knows: when it was given to an idle worker or the previous result came.
	since      time.Time
	limit      *time.Timer // the time limit of the first in-flight task
	assigned   int         // tasks ever given (for MaxTasksPerWorker)
	tasksDone  int         // results received
	stopping   bool        // told to exit (or exiting by itself): not a death
	unwritable bool        // a write to it failed: it is dying
	dead       bool
}

const (
	// maxDepth bounds how many tasks a worker holds at once.
	maxDepth = 8
	// pipelineBudget is how much queued work a worker may hold beyond the
	// task it runs: the most a task can be delayed by being given early.
	pipelineBudget = 2 * time.Millisecond
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
	if w.stopping || w.unwritable || w.dead || len(w.inflight) >= depth {
		return false
	}
	return maxTasks <= 0 || w.assigned < maxTasks
}

// addWorker starts one worker, sends it the init frame and gives it work.
// Each worker has two goroutines: the reader, which reads its results, and
// the reaper.
func (p *Pool) addWorker() error {
	p.mu.Lock()
	p.live++
	p.mu.Unlock()
	proc, err := startProcess(p.opts.Spec)
	if err == nil {
		if err = writeFrame(proc.input, kindInit, 0, p.opts.Spec.Init); err != nil {
			proc.signal(syscall.SIGKILL)
			go proc.reap()
		}
	}
	if err != nil {
		p.mu.Lock()
		p.live--
		p.checkAllExited()
		p.mu.Unlock()
		return err
	}
	w := &worker{proc: proc}
	p.mu.Lock()
	p.workers[w] = struct{}{}
	writers := p.dispatchLocked()
	p.mu.Unlock()
	go proc.reap()
	go p.readResults(w)
	p.deliver(writers)
	return nil
}

// replace starts a worker in place of one that died or retired.
func (p *Pool) replace() {
	if err := p.addWorker(); err != nil {
		p.fail(Result{Status: StatusBroken, Payload: []byte(err.Error())})
	}
}

// dispatchLocked gives queued tasks to workers, idle ones first, and lets
// idle workers go once the pool has no more work for them. It returns the
// workers whose outbox the caller must write once the lock is released: a
// large payload may take a while to go through a pipe.
func (p *Pool) dispatchLocked() []*worker {
	var writers []*worker
	depth := p.depthLocked()
	for p.queue.len() > 0 {
		w := p.leastBusyLocked(depth)
		if w == nil {
			break
		}
		t := p.queue.pop()
		w.inflight = append(w.inflight, t)
		if len(w.inflight) == 1 {
			p.startHeadLocked(w, time.Now())
		}
		w.outbox = append(w.outbox, t)
		w.assigned++
		if !w.writing {
			w.writing = true
			writers = append(writers, w)
		}
	}
	if p.queue.len() == 0 && p.noMoreWorkLocked() {
		for w := range p.workers {
			if len(w.inflight) == 0 && !w.stopping {
				p.stopLocked(w)
			}
		}
	}
	return writers
}

// leastBusyLocked returns the worker holding the fewest tasks among those
// that may take one more, or nil.
func (p *Pool) leastBusyLocked(depth int) *worker {
	var best *worker
	for w := range p.workers {
		if w.canTake(depth, p.opts.MaxTasksPerWorker) && (best == nil || len(w.inflight) < len(best.inflight)) {
			best = w
			if len(w.inflight) == 0 {
				break
			}
		}
	}
	return best
}

func (p *Pool) noMoreWorkLocked() bool {
	return p.state == Terminated || p.failure != nil || (p.state == Closed && p.open == 0)
}

// stopLocked tells a worker to exit: it reads end-of-stream and returns.
func (p *Pool) stopLocked(w *worker) {
	w.stopping = true
	if !w.writing {
		w.proc.closeInput()
	}
}

// deliver writes the outboxes of writers, in the calling goroutine.
func (p *Pool) deliver(writers []*worker) {
	for _, w := range writers {
		p.writeOutbox(w)
	}
}

func (p *Pool) writeOutbox(w *worker) {
	for {
		p.mu.Lock()
		if len(w.outbox) == 0 {
			w.writing = false
			if w.stopping {
				w.proc.closeInput()
			}
			p.mu.Unlock()
			return
		}
		t := w.outbox[0]
		w.outbox = w.outbox[1:]
		p.mu.Unlock()
		if err := writeFrame(w.proc.input, kindTask, t.tag, t.payload); err != nil {
			p.deliveryFailed(w, t)
			return
		}
	}
}

// deliveryFailed handles a task that could not be written: the worker died
// before reading all of it. That task and those behind it never started and
// go back to the front of the queue; the worker's reader sees the death.
func (p *Pool) deliveryFailed(w *worker, t *task) {
	p.mu.Lock()
	unsent := append([]*task{t}, w.outbox...)
	w.outbox = nil
	w.writing = false
	w.unwritable = true // no more tasks for it; its reader will see it die
	for i := len(unsent) - 1; i >= 0; i-- {
		p.requeueLocked(w, unsent[i])
	}
	writers := p.dispatchLocked()
	p.mu.Unlock()
	p.deliver(writers)
}

// requeueLocked takes t back from w and puts it at the front of the queue
// (or fails it, if the pool has failed).
func (p *Pool) requeueLocked(w *worker, t *task) {
	for i, v := range w.inflight {
		if v == t {
			w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
			break
		}
	}
	switch {
	case t.done:
	case p.failure != nil:
		p.finishLocked(t, p.failure.Status, p.failure.Payload)
	default:
		p.queue.pushFront(t)
	}
}

// readResults reads a worker's results until its stream ends.
func (p *Pool) readResults(w *worker) {
	for {
		f, err := readFrame(w.proc.output)
		if err != nil {
			p.workerDied(w, false)
			return
		}
		p.mu.Lock()
		replace, ok := p.handleFrameLocked(w, f)
		writers := p.dispatchLocked()
		p.mu.Unlock()
		p.deliver(writers)
		if replace {
			p.replace()
		}
		if !ok {
			p.workerDied(w, true)
			return
		}
	}
}

// handleFrameLocked applies one frame from w. It reports whether w must be
// replaced now, and false in ok if the frame breaks the protocol.
func (p *Pool) handleFrameLocked(w *worker, f frame) (replace, ok bool) {
	if f.kind == kindInitFailed {
		// Nothing it holds was started: all of it fails with the pool.
		for _, t := range w.inflight {
			p.finishLocked(t, StatusInitFailed, f.payload)
		}
		w.inflight, w.outbox = nil, nil
		p.failLocked(Result{Status: StatusInitFailed, Payload: f.payload})
		w.stopping = true // it exits by itself
		return false, true
	}
	if f.kind == kindRetiring {
		for i := len(w.inflight) - 1; i >= 0; i-- {
			p.requeueLocked(w, w.inflight[i])
		}
		w.outbox = nil
		p.stopLocked(w)
		return p.needsReplacementLocked(), true
	}
	if len(w.inflight) == 0 || f.tag != w.inflight[0].tag || (f.kind != byte(StatusOK) && f.kind != byte(StatusError)) {
		return false, false
	}
	t := w.inflight[0]
	w.inflight = w.inflight[1:]
	w.tasksDone++
	now := time.Now()
	if w.tasksDone > 1 { // the first one also paid for the worker's start-up
		p.recordTaskTimeLocked(now.Sub(w.since))
	}
	p.startHeadLocked(w, now)
	p.finishLocked(t, Status(f.kind), f.payload)
	if max := p.opts.MaxTasksPerWorker; max > 0 && w.tasksDone >= max {
		p.stopLocked(w)
		return p.needsReplacementLocked(), true
	}
	return false, true
}

// workerDied runs once a worker's result stream has ended (or, if broken,
// the worker broke the protocol). The task it was running, if any, fails
// with StatusWorkerLost; the tasks behind it never started and go back to
// the queue. A replacement starts if the pool still needs one.
func (p *Pool) workerDied(w *worker, broken bool) {
	if broken {
		w.proc.signal(syscall.SIGKILL)
	}
	<-w.proc.exited
	w.proc.closeOutput()
	p.mu.Lock()
	if w.limit != nil {
		w.limit.Stop()
	}
	if len(w.inflight) > 0 {
		p.finishLocked(w.inflight[0], StatusWorkerLost, lostPayload(w.proc))
		for i := len(w.inflight) - 1; i >= 1; i-- {
			p.requeueLocked(w, w.inflight[i])
		}
		w.inflight, w.outbox = nil, nil
	}
	replace := !w.stopping && p.needsReplacementLocked()
	w.stopping = true
	w.dead = true
	delete(p.workers, w)
	p.live--
	p.checkAllExited()
	writers := p.dispatchLocked()
	p.mu.Unlock()
	p.deliver(writers)
	if replace {
		p.replace()
	}
}

// startHeadLocked notes that w's first in-flight task starts now, and arms
// the time limit of its job, if it has one.
func (p *Pool) startHeadLocked(w *worker, now time.Time) {
	w.since = now
	if w.limit != nil {
		w.limit.Stop()
		w.limit = nil
	}
	if len(w.inflight) == 0 {
		return
	}
	t := w.inflight[0]
	if t.job.timeout > 0 {
		w.limit = time.AfterFunc(t.job.timeout, func() { p.timedOut(w, t) })
	}
}

// timedOut stops t if it is still running on w: t fails with
// StatusTimedOut and w is killed; what w held behind t goes back to the
// queue when its death is seen.
func (p *Pool) timedOut(w *worker, t *task) {
	p.mu.Lock()
	running := len(w.inflight) > 0 && w.inflight[0] == t && !t.done
	if running {
		p.finishLocked(t, StatusTimedOut, []byte(fmt.Sprint(w.proc.pid)))
	}
	p.mu.Unlock()
	if running {
		w.proc.signal(syscall.SIGKILL)
	}
}

// Cancel cancels a job: its tasks that have not started never will, and
// those running are stopped by killing their workers (which are replaced).
// All of them finish with StatusCancelled. Tasks already finished keep
// their results. It returns how many tasks it cancelled.
//
// One case is weaker: a short task already written to a worker busy with
// another job's task (pipelining) cannot be taken back without killing that
// other task. It finishes as cancelled now; if the worker reaches it, it
// runs and its result is dropped.
func (p *Pool) Cancel(jobID int64) (int, error) {
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
			p.finishLocked(t, StatusCancelled, nil)
		}
	}
	p.queue.removeJob(j, cancel)
	var kill []*process
	for w := range p.workers {
		p.takeBackUnwrittenLocked(w, j, cancel)
		if len(w.inflight) > 0 && w.inflight[0].job == j && !w.inflight[0].done {
			w.unwritable = true // its death hands back what it holds
			kill = append(kill, w.proc)
		}
		for _, t := range w.inflight {
			if t.job == j {
				cancel(t)
			}
		}
	}
	p.sealLocked(j)
	writers := p.dispatchLocked()
	p.mu.Unlock()
	p.deliver(writers)
	for _, proc := range kill {
		proc.signal(syscall.SIGKILL)
	}
	return cancelled, nil
}

// takeBackUnwrittenLocked removes j's tasks that are still in w's outbox
// and hands them to drop: they were never written, so they simply leave
// the worker.
func (p *Pool) takeBackUnwrittenLocked(w *worker, j *job, drop func(*task)) {
	if len(w.outbox) == 0 {
		return
	}
	head := w.inflight[0]
	keep := w.outbox[:0]
	for _, t := range w.outbox {
		if t.job != j {
			keep = append(keep, t)
			continue
		}
		for i, v := range w.inflight {
			if v == t {
				w.inflight = append(w.inflight[:i], w.inflight[i+1:]...)
				break
			}
		}
		drop(t)
	}
	w.outbox = keep
	if len(w.inflight) > 0 && w.inflight[0] != head {
		p.startHeadLocked(w, time.Now())
	}
}
