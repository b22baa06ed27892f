package shm

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A non-blocking operation may fail only for want of room or of items:
// while a live process holds the lock it needs, it waits for the lock.

// holdLock makes l look held by a live process (this one, as another
// thread would hold it) and releases it after d.
func holdLock(t *testing.T, l robustLock, d time.Duration) <-chan struct{} {
	t.Helper()
	if !atomic.CompareAndSwapUint64(l.word, 0, lockerID()) {
		t.Fatal("the lock is not free")
	}
	released := make(chan struct{})
	go func() {
		time.Sleep(d)
		l.unlock()
		close(released)
	}()
	return released
}

func TestQueueNonBlockingWaitsForALiveLockHolder(t *testing.T) {
	const hold = 40 * time.Millisecond // far more than a lock is ever held
	item := []byte("item")
	cases := []struct {
		name string
		lock func(q *Queue) robustLock
		fill int // items in the queue first
		op   func(q *Queue) error
	}{
		{"Put", func(q *Queue) robustLock { return q.wlock }, 0,
			func(q *Queue) error { return q.Put(item, 0) }},
		{"PutBatch", func(q *Queue) robustLock { return q.wlock }, 0,
			func(q *Queue) error { _, err := q.PutBatch([][]byte{item, item}, 0); return err }},
		{"Get", func(q *Queue) robustLock { return q.rlock }, 3,
			func(q *Queue) error { _, err := q.Get(make([]byte, 64), 0); return err }},
		{"GetBatch", func(q *Queue) robustLock { return q.rlock }, 3,
			func(q *Queue) error { _, _, err := q.GetBatch(make([]byte, 64), 10, 0); return err }},
	}
	for _, c := range cases {
		for _, bound := range []int{0, 100} {
			t.Run(fmt.Sprintf("%s/maxitems=%d", c.name, bound), func(t *testing.T) {
				q := newTestQueue(t, QueueOptions{MaxItems: bound, RingSize: 1 << 20})
				for i := 0; i < c.fill; i++ {
					mustPut(t, q, item)
				}
				released := holdLock(t, c.lock(q), hold)
				start := time.Now()
				if err := c.op(q); err != nil {
					t.Fatalf("with the lock held by a live process for %v: %v", hold, err)
				}
				if d := time.Since(start); d < hold/2 {
					t.Fatalf("returned after %v, before the lock was released", d)
				}
				<-released
			})
		}
	}
}

// A full queue and an empty one still fail at once, lock or no lock.
func TestQueueNonBlockingFailsOnlyWhenFullOrEmpty(t *testing.T) {
	q := newTestQueue(t, QueueOptions{MaxItems: 1, RingSize: 1 << 20})
	start := time.Now()
	if _, err := q.Get(make([]byte, 64), 0); err != ErrQueueEmpty {
		t.Fatalf("Get on an empty queue: %v", err)
	}
	mustPut(t, q, []byte("x"))
	if err := q.Put([]byte("y"), 0); err != ErrQueueFull {
		t.Fatalf("Put on a full queue: %v", err)
	}
	released := holdLock(t, q.wlock, time.Second)
	if err := q.Put([]byte("y"), 0); err != ErrQueueFull {
		t.Fatalf("Put on a full queue whose lock is held: %v", err)
	}
	if d := time.Since(start); d > 200*time.Millisecond {
		t.Fatalf("failing at once took %v", d)
	}
	q.wlock.unlock() // early: the goroutine's unlock then finds it free
	<-released
}

// A lock held by a live process for longer than lockPatience (stopped, or
// copying a huge item) makes the operation report ErrLockBusy, never
// full or empty: the caller tries again (Python does, in slices, so that
// Ctrl-C is handled meanwhile).
func TestQueueLockBusyIsNotFullOrEmpty(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	mustPut(t, q, []byte("x"))
	for _, c := range []struct {
		name string
		lock robustLock
		op   func() error
	}{
		{"put", q.wlock, func() error { return q.Put([]byte("y"), 0) }},
		{"get", q.rlock, func() error { _, err := q.Get(make([]byte, 64), 0); return err }},
	} {
		released := holdLock(t, c.lock, 3*lockPatience)
		start := time.Now()
		if err := c.op(); err != ErrLockBusy {
			t.Fatalf("%s: %v, want ErrLockBusy", c.name, err)
		}
		if d := time.Since(start); d < lockPatience*9/10 || d > 2*lockPatience {
			t.Fatalf("%s: gave up after %v, want about %v", c.name, d, lockPatience)
		}
		<-released
		if err := c.op(); err != nil {
			t.Fatalf("%s after the release: %v", c.name, err)
		}
	}
}

// TestQueueNonBlockingAcrossProcesses: producer processes put with timeout
// 0 on an unbounded queue while consumer processes take with timeout 0
// exactly as many items as there are: no put fails, no get finds the queue
// empty, nothing is lost.
func TestQueueNonBlockingAcrossProcesses(t *testing.T) {
	const producers, perProducer = 4, 20000
	q := newTestQueue(t, QueueOptions{RingSize: 16 << 20})
	var clients []*clientProc
	for p := 0; p < producers; p++ {
		clients = append(clients, startClientProc(t, q, fmt.Sprintf("produce-nowait:%d:%d", p, perProducer)))
	}
	for _, c := range clients {
		c.wait(t)
	}
	if n := q.Len(); n != producers*perProducer {
		t.Fatalf("%d items in the queue, want %d", n, producers*perProducer)
	}
	// Three consumers take a third each, non-blocking, at the same time:
	// every get happens while items remain.
	const consumers = 3
	share := producers * perProducer / consumers
	clients = clients[:0]
	for c := 0; c < consumers; c++ {
		n := share
		if c == consumers-1 {
			n = producers*perProducer - share*(consumers-1)
		}
		clients = append(clients, startClientProc(t, q, fmt.Sprintf("consume-nowait:%d", n)))
	}
	seen := map[[2]uint64]bool{}
	for _, c := range clients {
		for _, line := range c.wait(t) {
			var p, seq uint64
			if _, err := fmt.Sscan(line, &p, &seq); err != nil {
				t.Fatalf("consumer said %q", line)
			}
			if seen[[2]uint64{p, seq}] {
				t.Fatalf("producer %d item %d taken twice", p, seq)
			}
			seen[[2]uint64{p, seq}] = true
		}
	}
	if len(seen) != producers*perProducer || q.Len() != 0 {
		t.Fatalf("%d distinct items taken, %d left; want %d and 0", len(seen), q.Len(), producers*perProducer)
	}
}

// clientProc is a helper process started by startClientProc.
type clientProc struct {
	done chan struct{}
	out  []string
	err  error
}

func startClientProc(t *testing.T, q *Queue, role string) *clientProc {
	cmd, out := startClient(t, q, role)
	c := &clientProc{done: make(chan struct{})}
	go func() {
		defer close(c.done)
		for {
			line, err := out.ReadString('\n')
			if err != nil {
				break
			}
			c.out = append(c.out, strings.TrimSuffix(line, "\n"))
		}
		c.err = cmd.Wait()
	}()
	return c
}

func (c *clientProc) wait(t *testing.T) []string {
	t.Helper()
	select {
	case <-c.done:
	case <-time.After(60 * time.Second):
		t.Fatal("a helper process hung")
	}
	if c.err != nil {
		t.Fatalf("helper process: %v", c.err)
	}
	return c.out
}

// nonBlockingClient plays the produce-nowait and consume-nowait roles of
// the test binary (see queueClient).
func nonBlockingClient(q *Queue, args []string) int {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	switch args[0] {
	case "produce-nowait":
		id, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		item := make([]byte, 24)
		for seq := 0; seq < n; seq++ {
			copy(item, fmt.Sprintf("%d %d", id, seq))
			for {
				err := q.Put(item, 0)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrLockBusy) {
					fmt.Fprintln(os.Stderr, "put:", err)
					return 3
				}
			}
		}
	case "consume-nowait":
		n, _ := strconv.Atoi(args[1])
		buf := make([]byte, 64)
		for i := 0; i < n; i++ {
			for {
				k, err := q.Get(buf, 0)
				if err == nil {
					fmt.Fprintln(out, strings.TrimRight(string(buf[:k]), "\x00"))
					break
				}
				if !errors.Is(err, ErrLockBusy) {
					fmt.Fprintln(os.Stderr, "get:", err)
					return 3
				}
			}
		}
	default:
		return 5
	}
	return 0
}
