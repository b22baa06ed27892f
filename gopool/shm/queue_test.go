package shm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

func newTestQueue(t testing.TB, opts QueueOptions) *Queue {
	t.Helper()
	q, err := NewQueue(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.Close() })
	return q
}

func mustPut(t testing.TB, q *Queue, item []byte) {
	t.Helper()
	if err := q.Put(item, 0); err != nil {
		t.Fatalf("Put(%d bytes): %v", len(item), err)
	}
}

func mustGet(t testing.TB, q *Queue) []byte {
	t.Helper()
	buf := make([]byte, 4096)
	for {
		n, err := q.Get(buf, time.Second)
		var tooSmall *BufferTooSmallError
		if errors.As(err, &tooSmall) {
			buf = make([]byte, tooSmall.Need)
			continue
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		return buf[:n]
	}
}

// checked makes a payload that carries its own checksum: [producer 4]
// [sequence 8][random bytes][crc32 4].
func checked(producer uint32, seq uint64, size int, rng *rand.Rand) []byte {
	if size < 16 {
		size = 16
	}
	b := make([]byte, size)
	binary.LittleEndian.PutUint32(b, producer)
	binary.LittleEndian.PutUint64(b[4:], seq)
	rng.Read(b[12 : size-4])
	binary.LittleEndian.PutUint32(b[size-4:], crc32.ChecksumIEEE(b[:size-4]))
	return b
}

func verify(b []byte) (producer uint32, seq uint64, err error) {
	if len(b) < 16 {
		return 0, 0, fmt.Errorf("short item: %d bytes", len(b))
	}
	if crc32.ChecksumIEEE(b[:len(b)-4]) != binary.LittleEndian.Uint32(b[len(b)-4:]) {
		return 0, 0, fmt.Errorf("bad checksum in a %d-byte item", len(b))
	}
	return binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint64(b[4:]), nil
}

func TestQueueFIFO(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	for i := 0; i < 100; i++ {
		mustPut(t, q, []byte(fmt.Sprint("item ", i)))
	}
	if n := q.Len(); n != 100 {
		t.Fatalf("Len = %d, want 100", n)
	}
	mustPut(t, q, []byte{}) // an empty item is an item
	for i := 0; i < 100; i++ {
		if got, want := string(mustGet(t, q)), fmt.Sprint("item ", i); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	if got := mustGet(t, q); len(got) != 0 {
		t.Fatalf("got %q, want the empty item", got)
	}
	if n := q.Len(); n != 0 {
		t.Fatalf("Len = %d, want 0", n)
	}
}

func TestQueueGetTimeout(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	buf := make([]byte, 16)
	start := time.Now()
	if _, err := q.Get(buf, 50*time.Millisecond); err != ErrQueueEmpty {
		t.Fatalf("Get on an empty queue: %v, want ErrQueueEmpty", err)
	}
	if d := time.Since(start); d < 45*time.Millisecond || d > time.Second {
		t.Fatalf("Get waited %v, want about 50ms", d)
	}
	if _, err := q.Get(buf, 0); err != ErrQueueEmpty {
		t.Fatalf("Get(timeout 0): %v", err)
	}
	// A put from another goroutine wakes a waiting Get.
	go func() {
		time.Sleep(20 * time.Millisecond)
		_ = q.Put([]byte("late"), 0)
	}()
	n, err := q.Get(buf, 5*time.Second)
	if err != nil || string(buf[:n]) != "late" {
		t.Fatalf("Get = %q, %v", buf[:n], err)
	}
}

func TestQueueBounded(t *testing.T) {
	q := newTestQueue(t, QueueOptions{MaxItems: 2, RingSize: 1 << 20})
	mustPut(t, q, []byte("a"))
	mustPut(t, q, []byte("b"))
	if err := q.Put([]byte("c"), 0); err != ErrQueueFull {
		t.Fatalf("Put on a full queue: %v, want ErrQueueFull", err)
	}
	start := time.Now()
	if err := q.Put([]byte("c"), 30*time.Millisecond); err != ErrQueueFull {
		t.Fatalf("Put with timeout on a full queue: %v", err)
	}
	if d := time.Since(start); d < 25*time.Millisecond {
		t.Fatalf("Put gave up after %v", d)
	}
	done := make(chan error)
	go func() { done <- q.Put([]byte("c"), 5*time.Second) }()
	if got := string(mustGet(t, q)); got != "a" {
		t.Fatalf("got %q", got)
	}
	if err := <-done; err != nil {
		t.Fatalf("blocked Put: %v", err)
	}
	n, err := q.PutBatch([][]byte{[]byte("d"), []byte("e")}, 0)
	if n != 0 || err != ErrQueueFull {
		t.Fatalf("PutBatch on a full queue = %d, %v", n, err)
	}
	for _, want := range []string{"b", "c"} {
		if got := string(mustGet(t, q)); got != want {
			t.Fatalf("got %q, want %q", got, want)
		}
	}
	n, err = q.PutBatch([][]byte{[]byte("d"), []byte("e"), []byte("f")}, 0)
	if n != 2 || err != ErrQueueFull {
		t.Fatalf("PutBatch of 3 into room for 2 = %d, %v", n, err)
	}
}

func TestQueueItemSizes(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	if err := q.Put(make([]byte, q.MaxItemSize()+1), 0); err != ErrItemTooLarge {
		t.Fatalf("Put of an item larger than the ring: %v", err)
	}
	big := bytes.Repeat([]byte("x"), q.MaxItemSize())
	for i := 0; i < 3; i++ { // the largest item fits, whatever the ring's position
		mustPut(t, q, []byte("small"))
		mustGet(t, q)
		mustPut(t, q, big)
		if got := mustGet(t, q); !bytes.Equal(got, big) {
			t.Fatal("the largest item came back different")
		}
	}
	mustPut(t, q, []byte("0123456789"))
	var tooSmall *BufferTooSmallError
	if _, err := q.Get(make([]byte, 4), 0); !errors.As(err, &tooSmall) || tooSmall.Need != 10 {
		t.Fatalf("Get into a small buffer: %v", err)
	}
	if got := string(mustGet(t, q)); got != "0123456789" {
		t.Fatalf("the item did not stay in the queue: got %q", got)
	}
}

func TestQueueRingFull(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 16})
	item := make([]byte, 1000)
	put := 0
	for {
		err := q.Put(item, 0)
		if err == ErrRingFull {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		put++
	}
	if put < 50 {
		t.Fatalf("only %d items of 1000 bytes fit in 64 KiB", put)
	}
	for i := 0; i < 5; i++ {
		mustGet(t, q)
	}
	mustPut(t, q, item) // consumed room is reusable at once (by whole pages)
	for i := 0; i < put-4; i++ {
		mustGet(t, q)
	}

	// On a bounded queue, a full ring makes Put wait like a full queue.
	b := newTestQueue(t, QueueOptions{MaxItems: 1000, RingSize: 1 << 16})
	for b.Put(item, 0) == nil {
	}
	if err := b.Put(item, 10*time.Millisecond); err != ErrQueueFull {
		t.Fatalf("Put into a bounded queue with a full ring: %v", err)
	}
}

func TestQueueBatch(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	var items [][]byte
	for i := 0; i < 50; i++ {
		items = append(items, bytes.Repeat([]byte{byte(i)}, i))
	}
	if n, err := q.PutBatch(items, 0); n != 50 || err != nil {
		t.Fatalf("PutBatch = %d, %v", n, err)
	}
	buf := make([]byte, 300) // room for some of them only
	var got [][]byte
	for len(got) < 50 {
		k, n, err := q.GetBatch(buf, 20, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		recs, err := SplitRecords(buf[:n])
		if err != nil || len(recs) != k || k > 20 {
			t.Fatalf("GetBatch gave %d items, %d records, %v", k, len(recs), err)
		}
		for _, r := range recs {
			got = append(got, append([]byte(nil), r...))
		}
	}
	for i := range items {
		if !bytes.Equal(got[i], items[i]) {
			t.Fatalf("item %d: got %v", i, got[i])
		}
	}
	if _, _, err := q.GetBatch(buf, 10, 0); err != ErrQueueEmpty {
		t.Fatalf("GetBatch on an empty queue: %v", err)
	}
}

func TestQueueTaskDoneJoin(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
	if err := q.TaskDone(); err != ErrTaskDone {
		t.Fatalf("TaskDone on a fresh queue: %v", err)
	}
	if ok, _ := q.Join(0); !ok {
		t.Fatal("Join on a fresh queue should return at once")
	}
	mustPut(t, q, []byte("a"))
	mustPut(t, q, []byte("b"))
	if ok, _ := q.Join(10 * time.Millisecond); ok {
		t.Fatal("Join returned with two unfinished items")
	}
	joined := make(chan bool)
	go func() {
		ok, _ := q.Join(5 * time.Second)
		joined <- ok
	}()
	for i := 0; i < 2; i++ {
		mustGet(t, q)
		if err := q.TaskDone(); err != nil {
			t.Fatal(err)
		}
	}
	if !<-joined {
		t.Fatal("Join did not return after the last TaskDone")
	}
	if err := q.TaskDone(); err != ErrTaskDone {
		t.Fatalf("one TaskDone too many: %v", err)
	}
	if q.Unfinished() != 0 {
		t.Fatalf("Unfinished = %d", q.Unfinished())
	}
}

func TestQueueOpenFd(t *testing.T) {
	q := newTestQueue(t, QueueOptions{MaxItems: 7, RingSize: 1 << 20})
	other, err := OpenQueue(q.Fd())
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if other.MaxItems() != 7 || other.RingSize() != q.RingSize() {
		t.Fatalf("the second mapping sees MaxItems %d, RingSize %d", other.MaxItems(), other.RingSize())
	}
	mustPut(t, q, []byte("through the file"))
	if got := string(mustGet(t, other)); got != "through the file" {
		t.Fatalf("got %q", got)
	}
	if _, err := OpenQueue(int(os.Stdin.Fd())); err == nil {
		t.Fatal("OpenQueue of a descriptor that is no queue should fail")
	}
	if err := other.Close(); err != nil {
		t.Fatal(err)
	}
	if err := other.Put([]byte("x"), 0); err != ErrQueueClosed {
		t.Fatalf("Put after Close: %v", err)
	}
	mustPut(t, q, []byte("still works")) // the first mapping is unaffected
}

// TestQueueConcurrent runs producers and consumers on separate mappings of
// one queue through a small ring (many laps, wrap-around, rewinds, records
// crossing the end of the ring): every item arrives once, intact, in each
// producer's order.
func TestQueueConcurrent(t *testing.T) {
	q := newTestQueue(t, QueueOptions{MaxItems: 500, RingSize: 1 << 18})
	const producers, consumers, perProducer = 4, 3, 2000
	var wg sync.WaitGroup
	for p := 0; p < producers; p++ {
		m, err := OpenQueue(q.Fd())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		wg.Add(1)
		go func(p int, m *Queue) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(p)))
			for i := 0; i < perProducer; {
				batch := 1 + rng.Intn(4)
				var items [][]byte
				for k := 0; k < batch && i+k < perProducer; k++ {
					items = append(items, checked(uint32(p), uint64(i+k), 16+rng.Intn(3000), rng))
				}
				n, err := m.PutBatch(items, 10*time.Second)
				if err != nil {
					t.Errorf("producer %d: %v", p, err)
					return
				}
				i += n
			}
		}(p, m)
	}
	results := make(chan []byte, 1000)
	var cwg sync.WaitGroup
	stop := make(chan struct{})
	for c := 0; c < consumers; c++ {
		m, err := OpenQueue(q.Fd())
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		cwg.Add(1)
		go func(c int, m *Queue) {
			defer cwg.Done()
			buf := make([]byte, 64<<10)
			for {
				select {
				case <-stop:
					return
				default:
				}
				if c == 0 {
					k, n, err := m.GetBatch(buf, 8, 10*time.Millisecond)
					if err == ErrQueueEmpty {
						continue
					}
					if err != nil {
						t.Errorf("consumer %d: %v", c, err)
						return
					}
					recs, _ := SplitRecords(buf[:n])
					if len(recs) != k {
						t.Errorf("GetBatch: %d items, %d records", k, len(recs))
					}
					for _, r := range recs {
						results <- append([]byte(nil), r...)
					}
					continue
				}
				n, err := m.Get(buf, 10*time.Millisecond)
				if err == ErrQueueEmpty {
					continue
				}
				if err != nil {
					t.Errorf("consumer %d: %v", c, err)
					return
				}
				results <- append([]byte(nil), buf[:n]...)
			}
		}(c, m)
	}
	next := make([]uint64, producers)
	seen := make([]int, producers) // the items of a producer may be taken by different consumers
	received := map[[2]uint64]bool{}
	for total := 0; total < producers*perProducer; total++ {
		var item []byte
		select {
		case item = <-results:
		case <-time.After(20 * time.Second):
			t.Fatalf("no item after %d of %d", total, producers*perProducer)
		}
		p, seq, err := verify(item)
		if err != nil {
			t.Fatal(err)
		}
		key := [2]uint64{uint64(p), seq}
		if received[key] {
			t.Fatalf("item %v received twice", key)
		}
		received[key] = true
		seen[p]++
		if seq >= next[p] {
			next[p] = seq + 1
		}
	}
	close(stop)
	cwg.Wait()
	wg.Wait()
	for p := range seen {
		if seen[p] != perProducer {
			t.Fatalf("producer %d: %d items received", p, seen[p])
		}
	}
	if q.Len() != 0 {
		t.Fatalf("%d items left", q.Len())
	}
}

// TestQueueOrderSingleConsumer checks FIFO order across ring laps with one
// consumer.
func TestQueueOrderSingleConsumer(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 16})
	rng := rand.New(rand.NewSource(1))
	var seq, want uint64
	buf := make([]byte, 1<<16)
	for round := 0; round < 300; round++ {
		for k := rng.Intn(20); k > 0; k-- {
			err := q.Put(checked(0, seq, 16+rng.Intn(4000), rng), 0)
			if err == ErrRingFull {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			seq++
		}
		for k := rng.Intn(20); k > 0 && want < seq; k-- {
			n, err := q.Get(buf, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, s, err := verify(buf[:n])
			if err != nil || s != want {
				t.Fatalf("got item %d (%v), want %d", s, err, want)
			}
			want++
		}
	}
}

// TestQueueRewindKeepsRoom: a producer that went back to the start of the
// ring (leaving a skip record) still has the whole ring when the consumer
// stops taking.
func TestQueueRewindKeepsRoom(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20}) // hot window 256 KiB at most
	item := make([]byte, 4000)
	for i := 0; i < 70; i++ { // beyond the hot window, with an empty queue
		mustPut(t, q, item)
		mustGet(t, q)
	}
	put := 0
	for ; put < 240; put++ { // about 940 KiB, more than the rest of the lap
		if err := q.Put(item, 0); err != nil {
			t.Fatalf("Put %d: %v", put, err)
		}
	}
	for i := 0; i < put; i++ {
		mustGet(t, q)
	}
}

// TestQueueJumpOverStalledLap: a producer goes back to the start of the
// ring with records of the lap it leaves still in flight; the consumer
// then stops taking. The producer jumps over those records and can still
// fill most of the ring, and everything comes out in order.
func TestQueueJumpOverStalledLap(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 22}) // hot window 1 MiB at most
	rng := rand.New(rand.NewSource(3))
	var seq, want uint64
	take := func() {
		t.Helper()
		_, s, err := verify(mustGet(t, q))
		if err != nil || s != want {
			t.Fatalf("got item %d (%v), want %d", s, err, want)
		}
		want++
	}
	put := func(size int) error {
		err := q.Put(checked(0, seq, size, rng), 0)
		if err == nil {
			seq++
		}
		return err
	}
	for round := 0; round < 20; round++ {
		// Stream with a few records in flight, past the hot window.
		for i := 0; i < 400; i++ {
			if err := put(16 + rng.Intn(4000)); err != nil {
				t.Fatal(err)
			}
			if seq-want > 3 {
				take()
			}
		}
		// Stall the consumer: the producer fills the ring.
		inFlight := 0
		for {
			size := 16 + rng.Intn(60000)
			if put(size) != nil {
				break
			}
			inFlight += size
		}
		if inFlight < q.RingSize()*3/4 {
			t.Fatalf("round %d: ring full with only %d bytes put since the stall", round, inFlight)
		}
		if held := int(q.Len()); held != int(seq-want) {
			t.Fatalf("Len = %d, want %d", held, seq-want)
		}
		for want < seq {
			take()
		}
	}
}

// check walks the records in flight and checks that they are well formed
// and as many as the counts say.
func (q *Queue) check() error {
	h := atomic.LoadUint64(q.head)
	t := atomic.LoadUint64(q.tail)
	pos, end := uint32(h), uint32(t)
	var items uint32
	for pos != end {
		if end-pos > 2*q.size {
			return fmt.Errorf("record at %x beyond tail %x", pos, end)
		}
		switch length, kind := q.readHeader(pos & q.mask); kind {
		case kindSkip:
			pos += length
		case kindItem:
			pos += align8(recHeader + length)
			items++
		default:
			return fmt.Errorf("bad record kind %d at %x (head %x, tail %x)", kind, pos, uint32(h), end)
		}
	}
	if items != uint32(t>>32)-uint32(h>>32) {
		return fmt.Errorf("%d records for %d items", items, uint32(t>>32)-uint32(h>>32))
	}
	return nil
}

// TestQueueRandomOps puts and takes items of random sizes (some a quarter
// of the ring) at random, on bounded queues of a small ring: rewinds,
// jumps, full rings and full queues. After every operation the records in
// flight are checked, and every item comes out intact and in order.
func TestQueueRandomOps(t *testing.T) {
	for seed := int64(0); seed < 60; seed++ {
		maxItems := int(10 + seed%150)
		if seed%2 == 1 {
			maxItems = 0 // unbounded: a full ring is an error, and must be real
		}
		q, err := NewQueue(QueueOptions{MaxItems: maxItems, RingSize: 1 << 20})
		if err != nil {
			t.Fatal(err)
		}
		rng := rand.New(rand.NewSource(seed))
		var seq, want uint64
		var sizes []int // of the items in flight
		buf := make([]byte, 1<<20)
		bias := 1 + rng.Intn(3) // more puts than gets: full queues and rings
		for op := 0; op < 3000; op++ {
			if rng.Intn(bias+1) != 0 {
				size := 16 + rng.Intn(2000)
				if rng.Intn(20) == 0 {
					size = 16 + rng.Intn(256<<10)
				}
				err := q.Put(checked(0, seq, size, rng), 0)
				switch {
				case err == nil:
					seq++
					sizes = append(sizes, size)
				case err == ErrRingFull && maxItems == 0:
					inFlight := size
					for _, s := range sizes {
						inFlight += s + 16
					}
					if inFlight < q.RingSize()/2 {
						t.Fatalf("seed %d op %d: ring full with %d bytes in flight", seed, op, inFlight)
					}
				case err == ErrQueueFull && maxItems > 0:
				default:
					t.Fatalf("seed %d op %d: put: %v", seed, op, err)
				}
			} else if want < seq {
				n, err := q.Get(buf, 0)
				if err != nil {
					t.Fatalf("seed %d op %d: get: %v", seed, op, err)
				}
				if _, s, err := verify(buf[:n]); err != nil || s != want {
					t.Fatalf("seed %d op %d: got item %d (%v), want %d", seed, op, s, err, want)
				}
				want++
				sizes = sizes[1:]
			}
			if err := q.check(); err != nil {
				t.Fatalf("seed %d op %d: %v", seed, op, err)
			}
		}
		q.Close()
	}
}

func fileBytes(t *testing.T, fd int) int64 {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}

// TestQueueMemoryFollowsData: pages beyond the hot window are returned once
// consumed, and a queue with little in flight stays in the hot window.
func TestQueueMemoryFollowsData(t *testing.T) {
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 28})
	item := make([]byte, 64<<10)
	for i := 0; i < 512; i++ { // 32 MiB in flight
		mustPut(t, q, item)
	}
	if b := fileBytes(t, q.Fd()); b < 32<<20 {
		t.Fatalf("%d bytes in use with 32 MiB in flight", b)
	}
	for i := 0; i < 512; i++ {
		mustGet(t, q)
	}
	if b := fileBytes(t, q.Fd()); b > int64(atomic.LoadUint32(q.hot))+2*releaseBatch+int64(headerSize()) {
		t.Fatalf("%d bytes still in use after the queue emptied", b)
	}
	// Streaming with one item in flight: 200 MiB through, memory stays put.
	for i := 0; i < 3200; i++ {
		mustPut(t, q, item)
		mustGet(t, q)
	}
	if b := fileBytes(t, q.Fd()); b > int64(atomic.LoadUint32(q.hot))+2*releaseBatch+int64(headerSize()) {
		t.Fatalf("%d bytes in use after streaming", b)
	}
}

func BenchmarkQueuePutGet(b *testing.B) {
	q := newTestQueue(b, QueueOptions{})
	item := make([]byte, 16)
	buf := make([]byte, 64)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := q.Put(item, 0); err != nil {
			b.Fatal(err)
		}
		if _, err := q.Get(buf, 0); err != nil {
			b.Fatal(err)
		}
	}
}
