package pybind

import (
	"errors"

	"github.com/gopool/gopool/gopool/shm"
)

// Queues and the buffers that carry their items. Items cross between
// Python and Go through a SharedBuffer that both sides map (Python with
// mmap, from BufferFd), so a put or a get is one call with integer
// arguments and one memory copy on each side of the call.
//
// Results of blocking calls: Put and PutMany return what they put (0 when
// the queue stayed full until the timeout); Get and GetMany return the
// number of bytes written into the buffer, -1 when the queue stayed empty,
// or -(need+1) when the next item needs a buffer of need bytes. A call
// whose lock stayed held by a live process fails with CodeLockBusy (the
// queue is neither full nor empty for that): call again, timeout 0. A
// PutMany that put some items first returns what it put instead.

var queues = newRegistry[*shm.Queue]()

// QueueNew creates a queue that holds at most maxItems items (0: no bound)
// in a shared ring of ringSize bytes (0: the default).
func QueueNew(maxItems, ringSize int64) (int64, error) {
	q, err := shm.NewQueue(shm.QueueOptions{MaxItems: int(maxItems), RingSize: int(ringSize)})
	if err != nil {
		return result(int64(0), err)
	}
	return queues.add(q), nil
}

// QueueOpen maps the queue whose memory file is the inherited descriptor
// fd. The descriptor stays the caller's.
func QueueOpen(fd int64) (int64, error) {
	q, err := shm.OpenQueue(int(fd))
	if err != nil {
		return result(int64(0), err)
	}
	return queues.add(q), nil
}

// QueueFd returns the descriptor to hand to a child process.
func QueueFd(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(q.Fd()), nil
}

// QueueMaxItems returns the queue's bound on items, 0 if unbounded.
func QueueMaxItems(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(q.MaxItems()), nil
}

// QueueMaxItemSize returns the largest item the queue accepts, in bytes.
func QueueMaxItemSize(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(q.MaxItemSize()), nil
}

// QueueRelease unmaps the queue from this process and forgets its id.
func QueueRelease(queue int64) (int64, error) {
	q, err := queues.take(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), q.Close())
}

// QueueLen returns the number of items in the queue.
func QueueLen(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(q.Len()), nil
}

// QueuePut puts the first n bytes of a buffer as one item. It returns 1,
// or 0 if the queue stayed full for timeoutMs.
func QueuePut(queue, buffer, n int64, timeoutMs int) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(data []byte) (int64, error) {
		if n < 0 || n > int64(len(data)) {
			return 0, errBadArgument("item length %d out of a buffer of %d bytes", n, len(data))
		}
		switch err := q.Put(data[:n], millis(timeoutMs)); err {
		case nil:
			return 1, nil
		case shm.ErrQueueFull:
			return 0, nil
		default:
			return result(int64(0), err)
		}
	}))
}

// QueuePutMany puts the items stored in a buffer from byte start to byte
// end as records ([8-byte little-endian length][item], see
// shm.SplitRecords), in order, waiting up to timeoutMs for room. It
// returns how many bytes of records it put: less than end-start if the
// queue stayed full.
func QueuePutMany(queue, buffer, start, end int64, timeoutMs int) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(data []byte) (int64, error) {
		if start < 0 || start > end || end > int64(len(data)) {
			return 0, errBadArgument("records [%d, %d) out of a buffer of %d bytes", start, end, len(data))
		}
		items, err := shm.SplitRecords(data[start:end])
		if err != nil {
			return result(int64(0), err)
		}
		put, err := q.PutBatch(items, millis(timeoutMs))
		var done int64
		for _, it := range items[:put] {
			done += 8 + int64(len(it))
		}
		if err == shm.ErrQueueFull || (err == shm.ErrLockBusy && done > 0) {
			err = nil
		}
		return done, err
	}))
}

// getResult turns a get's result into the binding's convention.
func getResult(n int, err error) (int64, error) {
	var small *shm.BufferTooSmallError
	switch {
	case err == nil:
		return int64(n), nil
	case err == shm.ErrQueueEmpty:
		return -1, nil
	case errors.As(err, &small):
		return -int64(small.Need) - 1, nil
	default:
		return result(int64(0), err)
	}
}

// QueueGet takes the next item into a buffer, waiting up to timeoutMs for
// one, and returns its length (see the results above).
func QueueGet(queue, buffer int64, timeoutMs int) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(data []byte) (int64, error) {
		return getResult(q.Get(data, millis(timeoutMs)))
	}))
}

// QueueGetMany takes up to limit items that are in the queue, waiting up
// to timeoutMs for the first, into a buffer as records ([8-byte length]
// [item]), as many as fit; it returns the bytes written.
func QueueGetMany(queue, buffer, limit int64, timeoutMs int) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(withBuffer(buffer, func(data []byte) (int64, error) {
		_, n, err := q.GetBatch(data, int(limit), millis(timeoutMs))
		return getResult(n, err)
	}))
}

// QueueTaskDone marks one item as processed (JoinableQueue).
func QueueTaskDone(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), q.TaskDone())
}

// QueueUnfinished returns the number of items put and not marked done.
func QueueUnfinished(queue int64) (int64, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(q.Unfinished()), nil
}

// QueueJoin waits up to timeoutMs until every item put has been marked
// done, and reports whether that happened.
func QueueJoin(queue int64, timeoutMs int) (bool, error) {
	q, err := queues.get(queue)
	if err != nil {
		return result(false, err)
	}
	return result(q.Join(millis(timeoutMs)))
}
