package gopool

// taskQueue is a FIFO of tasks that reuses its backing array.
type taskQueue struct {
	items []*task
	head  int
}

func (q *taskQueue) len() int { return len(q.items) - q.head }

func (q *taskQueue) push(t *task) { q.items = append(q.items, t) }

func (q *taskQueue) pushFront(t *task) {
	if q.head > 0 {
		q.head--
		q.items[q.head] = t
		return
	}
	q.items = append([]*task{t}, q.items...)
}

func (q *taskQueue) pop() *task {
	t := q.items[q.head]
	q.items[q.head] = nil
	q.head++
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	} else if q.head > 1024 && q.head*2 > len(q.items) {
		q.items = append(q.items[:0], q.items[q.head:]...)
		q.head = 0
	}
	return t
}

// removeJob takes every task of j out of the queue and hands it to drop.
func (q *taskQueue) removeJob(j *job, drop func(*task)) {
	kept := q.items[:q.head]
	for _, t := range q.items[q.head:] {
		if t.job == j {
			drop(t)
		} else {
			kept = append(kept, t)
		}
	}
	for i := len(kept); i < len(q.items); i++ {
		q.items[i] = nil
	}
	q.items = kept
	if q.head == len(q.items) {
		q.items, q.head = q.items[:0], 0
	}
}
