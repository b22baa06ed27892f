package pybind

import (
	"encoding/binary"

	"github.com/gopool/gopool/gopool"
	"github.com/gopool/gopool/gopool/shm"
)

// How data is laid out in a shared buffer. Python reads and writes these
// layouts with the struct formats named here (generated into
// python/gopool/_wire.py; see wire_test.go).
//
// Tasks (PoolSubmit, PoolRun): records, [u64 length][payload] each (see
// shm.SplitRecords).
//
// Results (PoolCollect, PoolRun): ReplyHeader {count, flags}, then count
// ResultHeaders {index, status, pid, exit code, signal, length}, each
// followed by its payload. Flag ReplyDone: the job is complete and these
// are its last results.
//
// Notified results (PoolCollectNotified): ReplyHeader {jobs, 0}, then per
// job a JobHeader {job, count, flags} and its results as above.
//
// Workers (PoolWorkers): ReplyHeader {count, 0}, then count WorkerRecords
// {pid, tasks done, job of the running task or 0, its index}.
const (
	ReplyHeaderFormat  = "<II"
	ResultHeaderFormat = "<qIiiiQ"
	JobHeaderFormat    = "<qII"
	WorkerRecordFormat = "<qqqq"
	RecordHeaderFormat = "<Q"

	ReplyDone = 1

	replyHeaderSize  = 8
	resultHeaderSize = 32
	jobHeaderSize    = 16
	workerRecordSize = 32
)

// tooSmall is what a call returns when the buffer cannot hold what it
// must write first: -(need+1), need being the bytes needed.
func tooSmall(need int) int64 { return -int64(need) - 1 }

func resultSize(r *gopool.Result) int { return resultHeaderSize + len(r.Payload) }

// putReplyHeader writes a ReplyHeader.
func putReplyHeader(dst []byte, count, flags uint32) {
	binary.LittleEndian.PutUint32(dst[0:], count)
	binary.LittleEndian.PutUint32(dst[4:], flags)
}

// putResult writes one ResultHeader and its payload at dst, which has room.
func putResult(dst []byte, r *gopool.Result) int {
	le := binary.LittleEndian
	le.PutUint64(dst[0:], uint64(r.Index))
	le.PutUint32(dst[8:], uint32(r.Status))
	le.PutUint32(dst[12:], uint32(int32(r.Pid)))
	le.PutUint32(dst[16:], uint32(int32(r.Exit.Code)))
	le.PutUint32(dst[20:], uint32(int32(r.Exit.Signal)))
	le.PutUint64(dst[24:], uint64(len(r.Payload)))
	return resultHeaderSize + copy(dst[resultHeaderSize:], r.Payload)
}

// putResults writes results at dst, which has room for them.
func putResults(dst []byte, results []gopool.Result) int {
	pos := 0
	for i := range results {
		pos += putResult(dst[pos:], &results[i])
	}
	return pos
}

// splitTasks copies the task records in buf[:n] out of the buffer.
func splitTasks(buf []byte, n int64) ([]gopool.Payload, error) {
	if n < 0 || n > int64(len(buf)) {
		return nil, errBadArgument("records out of the buffer: %d of %d bytes", n, len(buf))
	}
	records, err := shm.SplitRecords(buf[:n])
	if err != nil {
		return nil, errBadArgument("task records: %v", err)
	}
	out := make([]gopool.Payload, len(records))
	for i, r := range records {
		out[i] = gopool.Payload{append([]byte(nil), r...)} // the buffer is the caller's again after the call
	}
	return out, nil
}
