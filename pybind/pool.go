// Package pybind is the flat API that gopy exports to Python. It is
// mechanical on purpose: objects are integer ids, batches are byte blobs, and
// every function returns (T, error). Blocking calls take a timeout in
// milliseconds that callers keep short (≤ 100 ms) so that Python can handle
// signals between calls. Results that are []byte are never empty (gopy cannot
// return an empty []byte): each starts with a flags byte.
package pybind

import (
	"encoding/binary"
	"sync"
	"time"

	"github.com/gopool/gopool/gopool"
)

var pools = registry[*gopool.Pool]{items: map[int64]*gopool.Pool{}}

type registry[T any] struct {
	mu    sync.Mutex
	last  int64
	items map[int64]T
}

func (r *registry[T]) add(v T) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	r.items[r.last] = v
	return r.last
}

func (r *registry[T]) get(id int64) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.items[id]
	if !ok {
		return v, errUnknownID
	}
	return v, nil
}

func (r *registry[T]) remove(id int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.items, id)
}

func millis(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }

// stringRecords splits a blob of records (see gopool.SplitRecords) into
// strings: lists of strings cross as blobs because a C string cannot hold
// the NUL that would separate them.
func stringRecords(blob []byte) ([]string, error) {
	records, err := gopool.SplitRecords(blob)
	if err != nil {
		return nil, err
	}
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r)
	}
	return out, nil
}

// PoolNew starts a pool of workers. argv and env are blobs of records;
// init is the payload of every worker's first frame; fds lists descriptors
// every worker inherits as 5, 6, ... (see ChildStart).
func PoolNew(workers, maxTasksPerWorker int, argv, env []byte, dir string, init, fds []byte, killGraceMs int) (int64, error) {
	spec, err := workerSpec(argv, env, dir, init, fds)
	if err != nil {
		return 0, err
	}
	spec.OwnProcessGroup = true
	p, err := gopool.New(gopool.Options{
		Workers:           workers,
		MaxTasksPerWorker: maxTasksPerWorker,
		Spec:              spec,
		KillGrace:         millis(killGraceMs),
	})
	if err != nil {
		closeFiles(spec.Inherit)
		return 0, err
	}
	return pools.add(p), nil
}

// PoolNewJob opens a job; see gopool.Pool.NewJob. timeoutMs limits each
// of its tasks (0: no limit).
func PoolNewJob(pool int64, notify bool, timeoutMs int) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	return p.NewJob(notify, millis(timeoutMs)), nil
}

// PoolSubmit adds the tasks in records (a blob of [8-byte length][payload]
// records) to a job, and returns how many were added.
func PoolSubmit(pool, job int64, records []byte) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	payloads, err := gopool.SplitRecords(append([]byte(nil), records...))
	if err != nil {
		return 0, err
	}
	return int64(len(payloads)), p.Submit(job, payloads)
}

// PoolSubmitJob opens a job, adds the tasks in records and seals it, in one
// call. It returns the job id.
func PoolSubmitJob(pool int64, notify bool, timeoutMs int, records []byte) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	payloads, err := gopool.SplitRecords(append([]byte(nil), records...))
	if err != nil {
		return 0, err
	}
	job := p.NewJob(notify, millis(timeoutMs))
	if err := p.Submit(job, payloads); err != nil {
		return 0, err
	}
	return job, p.Seal(job)
}

// PoolRun submits the tasks in records as one sealed job, like
// PoolSubmitJob, then collects like PoolCollect for up to waitMs. It
// returns [flags][8-byte job id][records]: one call for a whole apply() of
// a short task.
func PoolRun(pool int64, notify bool, timeoutMs int, records []byte, waitMs int) ([]byte, error) {
	job, err := PoolSubmitJob(pool, notify, timeoutMs, records)
	if err != nil {
		return nil, err
	}
	p, err := pools.get(pool)
	if err != nil {
		return nil, err
	}
	results, done, err := p.Collect(job, 0, millis(waitMs))
	if err != nil {
		return nil, err
	}
	return encodeResults(results, done, binary.LittleEndian.AppendUint64(nil, uint64(job))), nil
}

// PoolSeal seals a job.
func PoolSeal(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	return 0, p.Seal(job)
}

// Collect blob: [flags][records], flags bit 0 = the job is complete and all
// its results are in this blob; each record is
// [8-byte index][1-byte status][8-byte length][payload].
const flagJobDone = 1

// PoolCollect takes up to max results of a job (all if max ≤ 0), waiting up
// to timeoutMs for the first.
func PoolCollect(pool, job int64, max, timeoutMs int) ([]byte, error) {
	p, err := pools.get(pool)
	if err != nil {
		return nil, err
	}
	results, done, err := p.Collect(job, max, millis(timeoutMs))
	if err != nil {
		return nil, err
	}
	return encodeResults(results, done, nil), nil
}

// encodeResults writes [flags][header][records] (see PoolCollect).
func encodeResults(results []gopool.Result, done bool, header []byte) []byte {
	size := 1 + len(header)
	for _, r := range results {
		size += 17 + len(r.Payload)
	}
	out := make([]byte, 1, size)
	if done {
		out[0] = flagJobDone
	}
	out = append(out, header...)
	for _, r := range results {
		out = binary.LittleEndian.AppendUint64(out, uint64(r.Index))
		out = append(out, byte(r.Status))
		out = binary.LittleEndian.AppendUint64(out, uint64(len(r.Payload)))
		out = append(out, r.Payload...)
	}
	return out
}

// PoolCancel cancels a job and returns how many of its tasks it
// cancelled; see gopool.Pool.Cancel.
func PoolCancel(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	n, err := p.Cancel(job)
	return int64(n), err
}

// PoolDiscard forgets a job whose results nobody will collect.
func PoolDiscard(pool, job int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	p.Discard(job)
	return 0, nil
}

// PoolNextEvents returns [0][8-byte job id]... for the notify jobs completed
// since the last call, waiting up to timeoutMs for the first.
func PoolNextEvents(pool int64, timeoutMs int) ([]byte, error) {
	p, err := pools.get(pool)
	if err != nil {
		return nil, err
	}
	ids := p.NextEvents(millis(timeoutMs))
	out := make([]byte, 1, 1+8*len(ids))
	for _, id := range ids {
		out = binary.LittleEndian.AppendUint64(out, uint64(id))
	}
	return out, nil
}

// PoolClose closes a pool: no new work, workers exit when done.
func PoolClose(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	p.Close()
	return 0, nil
}

// PoolTerminate stops a pool's workers at once.
func PoolTerminate(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	p.Terminate()
	return 0, nil
}

// PoolJoin waits up to timeoutMs for every worker to exit and reports
// whether they have.
func PoolJoin(pool int64, timeoutMs int) (bool, error) {
	p, err := pools.get(pool)
	if err != nil {
		return false, err
	}
	return p.Join(millis(timeoutMs))
}

// PoolRelease terminates a pool and forgets its id.
func PoolRelease(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	p.Release()
	pools.remove(pool)
	return 0, nil
}

// PoolWorkers returns [0] then, per live worker, four 8-byte fields:
// pid, tasks done, job id of its current task (0 when idle), task index.
func PoolWorkers(pool int64) ([]byte, error) {
	p, err := pools.get(pool)
	if err != nil {
		return nil, err
	}
	infos := p.Workers()
	out := make([]byte, 1, 1+32*len(infos))
	for _, w := range infos {
		for _, v := range []int64{int64(w.Pid), int64(w.TasksDone), w.Job, w.Index} {
			out = binary.LittleEndian.AppendUint64(out, uint64(v))
		}
	}
	return out, nil
}

// PoolQueued returns how many tasks wait for a worker.
func PoolQueued(pool int64) (int64, error) {
	p, err := pools.get(pool)
	if err != nil {
		return 0, err
	}
	return int64(p.Queued()), nil
}
