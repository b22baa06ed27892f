package gopool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand"
	"os"
	"sync"
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
	q := newTestQueue(t, QueueOptions{RingSize: 1 << 20}) // hot window 256 KiB
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
	if b := fileBytes(t, q.Fd()); b > hotWindow+2*releaseBatch+int64(headerSize()) {
		t.Fatalf("%d bytes still in use after the queue emptied", b)
	}
	// Streaming with one item in flight: 200 MiB through, memory stays put.
	for i := 0; i < 3200; i++ {
		mustPut(t, q, item)
		mustGet(t, q)
	}
	if b := fileBytes(t, q.Fd()); b > hotWindow+2*releaseBatch+int64(headerSize()) {
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
