package gopool

import (
	"os"
	"syscall"
	"time"

	"github.com/gopool/gopool/gopool/shm"
)

// workerState is the life of a worker.
type workerState int

const (
	// workerRunning: it takes tasks.
	workerRunning workerState = iota
	// workerStopping: it was told to exit, or exits by itself (retiring,
	// initialisation failed): its end is not a death.
	workerStopping
	// workerDoomed: it is being killed (cancel, time limit); it takes no
	// more tasks and is replaced once dead.
	workerDoomed
	// workerBroken: it broke the protocol and is being killed; what it
	// sends is not read any more.
	workerBroken
	// workerDead: its process has been reaped.
	workerDead
)

// worker is one worker process and the core's side of its channel.
type worker struct {
	proc  *process
	ch    *shm.Channel
	out   *shm.MessageWriter // down: init, tasks, stop
	in    *shm.MessageReader // up: results
	state workerState
	// inflight are the tasks given to the worker and not yet answered, in
	// the order they are (or will be) written. The first is the one it
	// runs or will run next.
	inflight []*task
	// outbox are the tasks of inflight not yet begun to be written.
	outbox       []*task
	nextSeq      uint64 // the sequence number of the last task given
	stopSent     bool
	writerActive bool // a writeLoop goroutine finishes what did not fit
	// since is when the first in-flight task started, as best the core
	// knows: when it was given to an idle worker or the previous result came.
	since     time.Time
	limit     *time.Timer // the time limit of the first in-flight task
	soft      *time.Timer // and its soft time limit
	assigned  int         // tasks ever given (for MaxTasksPerWorker)
	tasksDone int         // results received
}

// addWorker starts one worker with the init message in its channel, and
// gives it work.
func (p *Pool) addWorker() error {
	ch, err := shm.NewChannel(p.opts.ChannelRingSize)
	if err != nil {
		return err
	}
	w := &worker{ch: ch, out: shm.NewMessageWriter(&ch.Down), in: shm.NewMessageReader(&ch.Up)}
	init := p.opts.Spec.Init
	w.out.Start(shm.MessageHeader{Kind: MsgInit}, init) // an empty ring has room for the header
	p.mu.Lock()
	p.live++
	p.mu.Unlock()
	proc, err := startProcess(p.opts.Spec, []*os.File{ch.File(), p.bell.File()})
	if err != nil {
		ch.Close()
		p.mu.Lock()
		p.live--
		p.checkAllExitedLocked()
		p.mu.Unlock()
		return err
	}
	w.proc = proc
	p.mu.Lock()
	p.workers[w] = struct{}{}
	if p.state == Terminated {
		w.state = workerStopping
		proc.signal(syscall.SIGKILL)
	}
	p.writeLocked(w) // the rest of a large init message
	p.dispatchLocked()
	p.unlockLocked()
	go p.watch(w)
	return nil
}

// replace starts a worker in place of one that died or retired.
func (p *Pool) replace() {
	if err := p.addWorker(); err != nil {
		p.fail(Result{Status: StatusBroken, Payload: []byte(err.Error())})
	}
}

// drainLocked reads the results every worker has published.
func (p *Pool) drainLocked() {
	p.lastDrain.Store(time.Now().UnixNano())
	for w := range p.workers {
		p.drainWorkerLocked(w)
	}
}

// drainWorkerLocked reads and applies the messages w has published.
func (p *Pool) drainWorkerLocked(w *worker) {
	for w.state != workerDead && w.state != workerBroken {
		h, payload, ok, err := w.in.Next()
		if !ok && err == nil {
			return
		}
		if err != nil || !p.handleMessageLocked(w, h, payload) {
			p.brokenLocked(w)
		}
	}
}

// handleMessageLocked applies one message from w. It reports false if the
// message breaks the protocol.
func (p *Pool) handleMessageLocked(w *worker, h shm.MessageHeader, payload []byte) bool {
	switch h.Kind {
	case MsgInitFailed:
		// Nothing it holds began: all of it fails with the pool.
		r := Result{Status: StatusInitFailed, Payload: payload}
		for _, t := range w.inflight {
			p.finishLocked(t, r)
		}
		w.inflight, w.outbox = nil, nil
		p.failLocked(r)
		w.state = workerStopping // it exits by itself
		return true
	case MsgRetiring:
		for i := len(w.inflight) - 1; i >= 0; i-- {
			p.requeueLocked(w, w.inflight[i])
		}
		p.retireLocked(w)
		return true
	case MsgResultOK, MsgResultError, MsgSkipped:
	default:
		return false
	}
	if len(w.inflight) == 0 || w.inflight[0].seq != h.Tag {
		return false
	}
	t := w.inflight[0]
	w.inflight = w.inflight[1:]
	now := time.Now()
	if h.Kind == MsgSkipped {
		p.finishLocked(t, Result{Status: StatusCancelled}) // it was, by Revoke
		p.startHeadLocked(w, now)
		return true
	}
	w.tasksDone++
	if w.tasksDone > 1 { // the first one also paid for the worker's start-up
		p.recordTaskTimeLocked(now.Sub(w.since))
	}
	p.startHeadLocked(w, now)
	status := StatusOK
	if h.Kind == MsgResultError {
		status = StatusError
	}
	p.finishLocked(t, Result{Status: status, Payload: payload})
	if max := p.opts.MaxTasksPerWorker; max > 0 && w.tasksDone >= max {
		p.retireLocked(w)
	}
	return true
}

// retireLocked stops w for good, and starts a replacement if the pool
// still needs one.
func (p *Pool) retireLocked(w *worker) {
	if w.state != workerRunning {
		return
	}
	p.stopLocked(w)
	if p.needsReplacementLocked() {
		go p.replace()
	}
}

// brokenLocked kills a worker that broke the protocol.
func (p *Pool) brokenLocked(w *worker) {
	if w.state != workerDead {
		w.state = workerBroken
		w.proc.signal(syscall.SIGKILL)
	}
}

// doomLocked kills w; its death hands back what it holds.
func (p *Pool) doomLocked(w *worker) {
	if w.state != workerDead && w.state != workerBroken {
		w.state = workerDoomed
		w.proc.signal(syscall.SIGKILL)
	}
}

// watch waits for w's process to end, then handles its death.
func (p *Pool) watch(w *worker) {
	<-w.proc.exited
	p.workerDied(w)
}

// workerDied runs once w's process has been reaped. What it published
// before it ended is read first. The task it was running, if any, fails
// with StatusWorkerLost; the tasks behind it never began and go back to
// the queue. A replacement starts if the pool still needs one. A worker
// that died before its initialisation succeeded fails the pool.
func (p *Pool) workerDied(w *worker) {
	p.mu.Lock()
	p.drainWorkerLocked(w)
	w.stopTimers()
	lost := Result{Status: StatusWorkerLost, Pid: w.proc.pid, Exit: w.proc.exit}
	if p.cannotStartWorkersLocked(w) {
		// As when initialisation raises: every task fails, with no respawn.
		for _, t := range w.inflight {
			p.finishLocked(t, lost)
		}
		p.failLocked(lost)
	}
	if len(w.inflight) > 0 {
		head := w.inflight[0]
		if !head.done && w.ch.Started() >= head.seq {
			p.finishLocked(head, lost)
		}
		for i := len(w.inflight) - 1; i >= 0; i-- {
			p.requeueLocked(w, w.inflight[i])
		}
	}
	replace := w.state != workerStopping && p.needsReplacementLocked()
	w.state = workerDead
	w.inflight, w.outbox = nil, nil
	delete(p.workers, w)
	if !w.writerActive {
		w.ch.Close()
	}
	p.live--
	p.checkAllExitedLocked()
	p.dispatchLocked()
	p.unlockLocked()
	if replace {
		p.replace()
	}
}

// maxEarlyDeaths is how many workers in a row may be killed before they
// are ready before the pool stops starting them.
const maxEarlyDeaths = 5

// cannotStartWorkersLocked tells, at w's death, whether workers cannot be
// started: w exited by itself before it was ready (its initializer, or the
// preparation of the parent's __main__, called exit), or it is the
// maxEarlyDeaths-th worker in a row killed by a signal before it was
// ready. A single kill from outside (the OOM killer, a user's kill) while a
// worker starts is a death like any other: the worker is replaced.
func (p *Pool) cannotStartWorkersLocked(w *worker) bool {
	if w.ch.Phase() == PhaseReady {
		p.earlyDeaths = 0
		return false
	}
	if w.state != workerRunning || p.state == Terminated {
		return false // told to stop, or killed by the core
	}
	if w.proc.exit.Signal == 0 {
		return true
	}
	p.earlyDeaths++
	return p.earlyDeaths >= maxEarlyDeaths
}

// softTimedOut tells w that t passed its soft time limit, if t is still
// the task it runs.
func (p *Pool) softTimedOut(w *worker, t *task) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if w.state == workerDead || len(w.inflight) == 0 || w.inflight[0] != t || t.done {
		return
	}
	if w.ch.Running() == t.seq {
		w.ch.SetSoftLimit(t.seq)
		w.proc.signal(SoftLimitSignal)
	}
}

// timedOut stops t if it is still w's current task: t fails with
// StatusTimedOut and w is killed; what w held behind t goes back to the
// queue when its death is seen.
func (p *Pool) timedOut(w *worker, t *task) {
	p.mu.Lock()
	if len(w.inflight) > 0 && w.inflight[0] == t {
		p.drainWorkerLocked(w)
	}
	if len(w.inflight) > 0 && w.inflight[0] == t && !t.done {
		p.finishLocked(t, Result{Status: StatusTimedOut, Pid: w.proc.pid})
		p.doomLocked(w)
	}
	p.unlockLocked()
}
