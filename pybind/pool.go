package pybind

import (
	"encoding/binary"

	"github.com/gopool/gopool/gopool"
)

var pools = newRegistry[*gopool.Pool]()

// Flags of PoolSubmit.
const (
	SubmitSeal   = 1 // seal the job after these tasks
	SubmitNotify = 2 // a new job's results go to PoolCollectNotified
)

// PoolNew starts a pool of workers. argv, zygote and env are records (see
// processSpec); init is every worker's init message; fds lists descriptors
// (8-byte little-endian numbers) the workers inherit after the core's own
// (see gopool.FirstInheritedFd).
func PoolNew(workers, maxTasksPerWorker int, argv, zygote []byte, entry string, env []byte, dir string, init, fds []byte, killGraceMs int, ownProcessGroup bool) (int64, error) {
	spec, err := processSpec(argv, zygote, entry, env, dir, init, fds)
	if err != nil {
		return result(int64(0), err)
	}
	spec.OwnProcessGroup = ownProcessGroup
	p, err := gopool.New(gopool.Options{
		Workers:           workers,
		MaxTasksPerWorker: maxTasksPerWorker,
		Spec:              spec,
		KillGrace:         millis(killGraceMs),
	})
	if err != nil {
		closeFiles(spec.Inherit)
		return result(int64(0), err)
	}
	return pools.add(p), nil
}

// PoolSubmit adds the task records in the first n bytes of a buffer to a
// job (0: a new one, with time limits of timeoutMs and softMs per task, 0
// for none) and returns the job's id. flags: SubmitSeal, SubmitNotify.
func PoolSubmit(pool, job int64, flags, timeoutMs, softMs int, buffer, n int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(buf []byte) (int64, error) {
		tasks, err := splitTasks(buf, n)
		if err != nil {
			return 0, err
		}
		spec := gopool.JobSpec{ID: job, Notify: flags&SubmitNotify != 0, Timeout: millis(timeoutMs), SoftTimeout: millis(softMs)}
		return p.Submit(spec, tasks, flags&SubmitSeal != 0)
	}))
}

// PoolRun submits the task records in a buffer as a new sealed job, then
// collects it like PoolCollect for up to waitMs, into the same buffer
// after the job's id (an 8-byte integer): one call for an apply(). It
// first acknowledges ackHandled results of job ackJob, if not 0 (see
// PoolCollect).
func PoolRun(pool int64, timeoutMs, softMs int, buffer, n int64, waitMs int, ackJob, ackHandled int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	if ackJob != 0 {
		p.Ack(ackJob, ackHandled)
	}
	return result(withBuffer(buffer, func(buf []byte) (int64, error) {
		tasks, err := splitTasks(buf, n)
		if err != nil {
			return 0, err
		}
		reply := newReplyWriter(buf[8:])
		spec := gopool.JobSpec{Timeout: millis(timeoutMs), SoftTimeout: millis(softMs)}
		job, results, done, refused, err := p.Run(spec, tasks, reply.take, millis(waitMs))
		if err != nil {
			return 0, err
		}
		binary.LittleEndian.PutUint64(buf, uint64(job))
		if refused {
			return tooSmall(8 + reply.need), nil
		}
		return 8 + reply.write(results, done), nil
	}))
}

// PoolCollect acknowledges that the caller has handled the job's first
// handled results, then writes the results that fit into a buffer (see
// wire.go), waiting up to waitMs for one. It returns the bytes written, or
// -(need+1) when the next result needs a buffer of need bytes. Results
// stay lent until acknowledged, by a later PoolCollect or by PoolAck. It
// first acknowledges ackHandled results of another job, ackJob, if not 0:
// the last acknowledgement of a job rides on the next call.
func PoolCollect(pool, job, handled, buffer int64, waitMs int, ackJob, ackHandled int64) (int64, error) {
	if ackJob != 0 {
		if p, err := pools.get(pool); err == nil {
			p.Ack(ackJob, ackHandled)
		}
	}
	return result(withBuffer(buffer, func(buf []byte) (int64, error) {
		return collectInto(pool, job, handled, buf, waitMs)
	}))
}

func collectInto(pool, job, handled int64, buf []byte, waitMs int) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	reply := newReplyWriter(buf)
	results, done, refused, err := p.Collect(job, handled, reply.take, millis(waitMs))
	if err != nil {
		return 0, err
	}
	if refused {
		return tooSmall(reply.need), nil
	}
	return reply.write(results, done), nil
}

// replyWriter writes the results of one job into a buffer (see wire.go),
// as many as fit: its take is the Taker that decides.
type replyWriter struct {
	buf  []byte
	room int
	need int // the buffer size the first refused result needs
}

func newReplyWriter(buf []byte) *replyWriter {
	return &replyWriter{buf: buf, room: len(buf) - replyHeaderSize}
}

func (w *replyWriter) take(_ int64, r *gopool.Result) bool {
	if r == nil {
		return true
	}
	size := resultSize(r)
	if size > w.room {
		w.need = replyHeaderSize + size
		return false
	}
	w.room -= size
	return true
}

func (w *replyWriter) write(results []gopool.Result, done bool) int64 {
	flags := uint32(0)
	if done {
		flags = ReplyDone
	}
	putReplyHeader(w.buf, uint32(len(results)), flags)
	return int64(replyHeaderSize + putResults(w.buf[replyHeaderSize:], results))
}

// PoolAck acknowledges that the caller has handled the job's first
// handled results.
func PoolAck(pool, job, handled int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	p.Ack(job, handled)
	return 0, nil
}

// PoolCollectNotified acknowledges what the previous call lent if ack is
// set, then writes the results of notify jobs that fit into a buffer (see
// wire.go), waiting up to waitMs for one. It returns the bytes written, or
// -(need+1) when the next job's results need a buffer of need bytes.
func PoolCollectNotified(pool int64, ack bool, buffer int64, waitMs int) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(buf []byte) (int64, error) {
		room, need := len(buf)-replyHeaderSize, 0
		take := func(_ int64, r *gopool.Result) bool {
			size := jobHeaderSize // asked first, once per job
			if r != nil {
				size = resultSize(r)
			}
			if size > room {
				need = replyHeaderSize + jobHeaderSize + size
				return false
			}
			room -= size
			return true
		}
		batches, refused := p.CollectNotified(ack, take, millis(waitMs))
		if refused {
			return tooSmall(need), nil
		}
		pos := replyHeaderSize
		for _, b := range batches {
			flags := uint32(0)
			if b.Done {
				flags = ReplyDone
			}
			binary.LittleEndian.PutUint64(buf[pos:], uint64(b.Job))
			binary.LittleEndian.PutUint32(buf[pos+8:], uint32(len(b.Results)))
			binary.LittleEndian.PutUint32(buf[pos+12:], flags)
			pos += jobHeaderSize
			pos += putResults(buf[pos:], b.Results)
		}
		putReplyHeader(buf, uint32(len(batches)), 0)
		return int64(pos), nil
	}))
}

// PoolNotify acknowledges handled results of a job, then sends its
// results to PoolCollectNotified from now on.
func PoolNotify(pool, job, handled int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), p.Notify(job, handled))
}

// PoolCancel cancels a job and returns how many of its tasks it cancelled.
func PoolCancel(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	n, err := p.Cancel(job)
	return result(int64(n), err)
}

// PoolCancelPending cancels a job's tasks that have not begun (those
// running go on) and returns how many it cancelled.
func PoolCancelPending(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	n, err := p.CancelPending(job)
	return result(int64(n), err)
}

// PoolDiscard forgets a job whose results nobody will collect.
func PoolDiscard(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	p.Discard(job)
	return 0, nil
}

// PoolClose closes a pool: no new work, workers exit when done.
func PoolClose(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	p.Close()
	return 0, nil
}

// PoolTerminate stops a pool's workers at once.
func PoolTerminate(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	p.Terminate()
	return 0, nil
}

// PoolJoin waits up to timeoutMs for every worker to exit and reports
// whether they have.
func PoolJoin(pool int64, timeoutMs int) (bool, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(false, err)
	}
	return result(p.Join(millis(timeoutMs)))
}

// PoolRelease terminates a pool and forgets its id.
func PoolRelease(pool int64) (int64, error) {
	p, err := pools.take(pool)
	if err != nil {
		return result(int64(0), err)
	}
	p.Release()
	return 0, nil
}

// PoolWorkers writes the live workers into a buffer (see wire.go) and
// returns the bytes written, or -(need+1).
func PoolWorkers(pool, buffer int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	infos := p.Workers()
	return result(withBuffer(buffer, func(buf []byte) (int64, error) {
		need := replyHeaderSize + workerRecordSize*len(infos)
		if need > len(buf) {
			return tooSmall(need), nil
		}
		putReplyHeader(buf, uint32(len(infos)), 0)
		pos := replyHeaderSize
		for _, w := range infos {
			for _, v := range []int64{int64(w.Pid), int64(w.TasksDone), w.Job, w.Index} {
				binary.LittleEndian.PutUint64(buf[pos:], uint64(v))
				pos += 8
			}
		}
		return int64(pos), nil
	}))
}

// PoolQueued returns how many tasks wait for a worker.
func PoolQueued(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(p.Queued()), nil
}

// Large tasks cross as parts rather than through a buffer: each part is a
// []byte that gopy made from a Python bytes object (one copy, into Go),
// which the core keeps as it is (see gopool.Payload).

var tasks = newRegistry[*gopool.Payload]()

// TaskNew starts a task to be given in parts, and returns its id.
func TaskNew() (int64, error) { return tasks.add(&gopool.Payload{}), nil }

// TaskAppend adds a part to a task.
func TaskAppend(task int64, part []byte) (int64, error) {
	t, err := tasks.get(task)
	if err != nil {
		return result(int64(0), err)
	}
	*t = append(*t, part)
	return int64(len(*t)), nil
}

// TaskDrop forgets a task that will not be submitted.
func TaskDrop(task int64) (int64, error) {
	_, err := tasks.take(task)
	return result(int64(0), err)
}

// PoolSubmitTask adds a task given in parts to a job, as PoolSubmit does
// with records, and forgets the task's id.
func PoolSubmitTask(pool, job int64, flags, timeoutMs, softMs int, task int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return result(int64(0), err)
	}
	t, err := tasks.take(task)
	if err != nil {
		return result(int64(0), err)
	}
	spec := gopool.JobSpec{ID: job, Notify: flags&SubmitNotify != 0, Timeout: millis(timeoutMs), SoftTimeout: millis(softMs)}
	return result(p.Submit(spec, []gopool.Payload{*t}, flags&SubmitSeal != 0))
}
