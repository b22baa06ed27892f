package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Queue is a FIFO of byte strings in memory shared by the processes of one
// tree: any number of producers and consumers, in any of the processes that
// map it, with owner-death recovery for its locks.
//
// # Memory
//
// A queue is an anonymous memory file (memfd: no name in any file system;
// other processes get it only by inheriting its descriptor, see OpenQueue):
// one header page, then a ring of RingSize bytes (a power of two, 1 GiB by
// default). The ring is mapped twice, back to back, so that a record that
// runs past the end of the ring continues at its start in memory. The file
// is sparse: pages exist only once written, so the reservation costs address
// space, not memory. Producers go back to the start of the ring whenever
// what is in flight allows it (the hot window: four times what is in
// flight, from 1 to 64 MiB), so a queue reuses the same pages lap after
// lap; consumed pages beyond the hot window are returned to the system
// (punched out of the file).
//
// # Records and positions
//
// A record is an 8-byte header (payload length, kind) and its payload,
// padded to 8 bytes; a skip record says where the next record is (the
// producer went back to the start of the ring, or jumped over a stalled
// lap: see appendLocked). Positions count bytes modulo 2^32 (a multiple of
// the ring size); the ring offset of a position is position mod RingSize.
// What is in flight spans less than two laps of positions, and two
// records in flight never share a byte of the ring.
//
// The producers' state is one 64-bit word, tail: items ever put (mod 2^32)
// in the high half, the position after the last committed record in the low
// half. The consumers' state is head, the same for items taken. A third
// word, released, is the position up to which consumed space may be
// reused; it trails head by less than releaseBatch, and a page of the ring
// is punched only when no record in flight, and no place a producer may be
// jumping to, has a byte in it.
//
// # Locking and crash safety
//
// Producers serialise on wlock, consumers on rlock (robustLock: a dead
// owner's lock is taken over). A producer writes its records beyond tail,
// then publishes them with one atomic store of tail; a consumer copies
// records out, then publishes their removal with one atomic store of head.
// So a process that dies at any instant leaves either all or nothing of its
// operation visible: a put that had not stored tail never happened (the next
// producer overwrites its bytes); a get that had not stored head leaves the
// item in the queue for the next consumer; a get that had stored head took
// the item with it. The released word and page punching only ever lag
// behind head, and whoever next holds rlock catches up.
//
// A timeout bounds the wait for room or items, never the wait for a lock
// held by a live process: an operation with timeout 0 still waits for the
// lock (see lockPatience), so Put fails with ErrQueueFull only when the
// queue is full, and Get with ErrQueueEmpty only when it is empty. A lock
// held past lockPatience gives ErrLockBusy.
//
// Waiting uses futexes on the low halves of tail (consumers waiting for
// data) and head (producers waiting for room), each with a sleepers' flag so
// that the other side makes the wake-up system call only when someone
// sleeps.
type Queue struct {
	file     *os.File
	base     unsafe.Pointer // the whole reservation: header, ring, ring again
	mapLen   uintptr
	ring     []byte // 2*size bytes: the ring twice
	hdrSize  uint32
	size     uint32 // ring size, a power of two
	mask     uint32
	minHot   uint32 // bounds of the hot window, see appendLocked
	maxHot   uint32
	maxItems uint32 // 0: unbounded
	maxItem  int    // largest payload

	wlock, rlock robustLock
	tail, head   *uint64
	tailLow      *uint32 // low halves: the futex words
	headLow      *uint32
	released     *uint32
	dataWaiters  *uint32
	spaceWaiters *uint32
	done         *uint32
	joinWaiters  *uint32
	hints        *[2]uint32
	passed       *[2]uint32
	hot          *uint32 // the hot window, written by producers

	mu     sync.RWMutex // operations hold it shared; Close exclusively
	closed bool
}

// QueueOptions configure NewQueue.
type QueueOptions struct {
	// MaxItems bounds the number of items in the queue; 0 means unbounded.
	MaxItems int
	// RingSize is the size of the shared ring in bytes, rounded up to a
	// power of two (at least 64 KiB); 0 means DefaultRingSize, or less if
	// the address space is too small for it. An item may take almost the
	// whole ring.
	RingSize int
}

// DefaultRingSize is the ring size of a queue when none is given.
const DefaultRingSize = 1 << 30

const (
	queueMagic   = 0x31515150_4f4f5047 // "GOPOOLQ1"
	queueVersion = 1
	minRingSize  = 64 << 10
	maxRingSize  = 1 << 30 // positions are 32-bit: at most a quarter of their range

	recHeader = 8
	kindItem  = 1
	kindSkip  = 2

	// The hot window: a producer whose record would end beyond this offset
	// of the ring goes back to offset 0 if what is in flight allows it, so
	// that the queue keeps reusing the same pages (fresh pages of a memory
	// file cost about 1 ms per MiB to fault in and punch out). It adapts to
	// what is in flight, between these bounds (and a quarter of the ring).
	minHotWindow = 1 << 20
	maxHotWindow = 64 << 20
	// releaseBatch: consumed pages beyond the hot window are punched out of
	// the file in batches of at least this many bytes.
	releaseBatch = 256 << 10

	// Spinning before sleeping: a peer usually acts within microseconds,
	// sooner than a futex sleep and wake-up take.
	getSpin = 20 * time.Microsecond
	putSpin = 10 * time.Microsecond
)

// Header layout: fields written by producers, by consumers, and by
// task_done live on separate cache lines.
const (
	offMagic        = 0
	offVersion      = 8
	offHeaderSize   = 12
	offRingSize     = 16
	offMaxItems     = 20
	offWlock        = 64
	offTail         = 128
	offDataWaiters  = 192
	offRlock        = 256
	offHead         = 320
	offReleased     = 328
	offSpaceWaiters = 384
	offDone         = 448
	offJoinWaiters  = 512
	offHints        = 576 // two u32: skip records written by producers (see liveHoles)
	offPassed       = 640 // two u32: skip records passed by consumers (see releaseLocked)
	offHot          = 648 // u32: the hot window (see appendLocked)
	headerUsed      = 704
)

var (
	// ErrQueueFull is returned by Put when the queue stays full (MaxItems
	// items, or a full ring on a bounded queue) until the deadline.
	ErrQueueFull = errors.New("queue: full")
	// ErrQueueEmpty is returned by Get when no item arrives in time.
	ErrQueueEmpty = errors.New("queue: empty")
	// ErrItemTooLarge is returned for an item that can never fit in the ring.
	ErrItemTooLarge = errors.New("queue: item too large")
	// ErrRingFull is returned by Put on an unbounded queue whose ring has no
	// room left: an unbounded put never waits.
	ErrRingFull = errors.New("queue: shared memory ring is full")
	// ErrTaskDone is returned by TaskDone when there is no unfinished item.
	ErrTaskDone = errors.New("queue: no unfinished item to mark done")
	// ErrLockBusy is returned by Put, PutBatch, Get and GetBatch when a
	// live process held the lock they need for longer than lockPatience
	// (and the timeout): the queue is neither full nor empty for that;
	// try again.
	ErrLockBusy = errors.New("queue: lock held by a live process for too long")
	// ErrQueueClosed is returned after Close.
	ErrQueueClosed = errors.New("queue: closed")
	// ErrQueueCorrupt means a record header made no sense. It cannot happen
	// through the queue's own operations, crashes included.
	ErrQueueCorrupt = errors.New("queue: corrupt record")
)

// BufferTooSmallError is returned by Get and GetBatch when the next item
// does not fit in the buffer given; the item stays in the queue.
type BufferTooSmallError struct {
	Need int // bytes needed for the next item (its frame, for GetBatch)
}

func (e *BufferTooSmallError) Error() string {
	return fmt.Sprintf("queue: buffer too small: the next item needs %d bytes", e.Need)
}

// NewQueue creates a queue in a new memory file.
func NewQueue(opts QueueOptions) (*Queue, error) {
	if opts.MaxItems < 0 || opts.MaxItems > 1<<31 {
		return nil, fmt.Errorf("queue: MaxItems out of range: %d", opts.MaxItems)
	}
	ring, fallback := opts.RingSize, false
	if ring == 0 {
		ring, fallback = DefaultRingSize, true
	}
	if ring < 0 || ring > maxRingSize {
		return nil, fmt.Errorf("queue: RingSize out of range: %d", opts.RingSize)
	}
	size := minRingSize
	for size < ring {
		size <<= 1
	}
	fd, err := unix.MemfdCreate("gopool-queue", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	file := os.NewFile(uintptr(fd), "gopool-queue")
	hdr := headerSize()
	for {
		var q *Queue
		if err = file.Truncate(int64(hdr + size)); err == nil {
			q, err = mapQueue(file, hdr, size)
		}
		if err == nil {
			q.init(uint32(opts.MaxItems))
			return q, nil
		}
		if !fallback || !errors.Is(err, unix.ENOMEM) || size <= 16<<20 {
			file.Close()
			return nil, err
		}
		size >>= 2 // too little address space (e.g. RLIMIT_AS): a smaller ring
	}
}

// OpenQueue maps a queue from a descriptor of its memory file (one that
// this process inherited). It uses its own duplicate of fd: the caller
// keeps fd.
func OpenQueue(fd int) (*Queue, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	file := os.NewFile(uintptr(dup), "gopool-queue")
	var head [headerUsed]byte
	if _, err := file.ReadAt(head[:], 0); err != nil {
		file.Close()
		return nil, fmt.Errorf("queue: descriptor %d is not a queue: %w", fd, err)
	}
	le := binary.LittleEndian
	hdr := int(le.Uint32(head[offHeaderSize:]))
	size := int(le.Uint32(head[offRingSize:]))
	if le.Uint64(head[offMagic:]) != queueMagic || le.Uint32(head[offVersion:]) != queueVersion ||
		hdr != headerSize() || size < minRingSize || size > maxRingSize || size&(size-1) != 0 {
		file.Close()
		return nil, fmt.Errorf("queue: descriptor %d is not a queue", fd)
	}
	q, err := mapQueue(file, hdr, size)
	if err != nil {
		file.Close()
		return nil, err
	}
	q.maxItems = le.Uint32(head[offMaxItems:])
	return q, nil
}

func headerSize() int {
	if p := os.Getpagesize(); p > 4096 {
		return p
	}
	return 4096
}

func mapQueue(file *os.File, hdr, size int) (*Queue, error) {
	total := uintptr(hdr + 2*size)
	base, err := unix.MmapPtr(-1, 0, nil, total, unix.PROT_NONE,
		unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	fd := int(file.Fd())
	rw := unix.PROT_READ | unix.PROT_WRITE
	fixed := unix.MAP_SHARED | unix.MAP_FIXED | unix.MAP_NORESERVE
	maps := []struct {
		at     int
		offset int64
		length int
	}{{0, 0, hdr}, {hdr, int64(hdr), size}, {hdr + size, int64(hdr), size}}
	for _, m := range maps {
		if _, err := unix.MmapPtr(fd, m.offset, unsafe.Add(base, m.at), uintptr(m.length), rw, fixed); err != nil {
			_ = unix.MunmapPtr(base, total)
			return nil, os.NewSyscallError("mmap", err)
		}
	}
	q := &Queue{
		file:    file,
		base:    base,
		mapLen:  total,
		ring:    unsafe.Slice((*byte)(unsafe.Add(base, hdr)), 2*size),
		hdrSize: uint32(hdr),
		size:    uint32(size),
		mask:    uint32(size - 1),
		minHot:  uint32(min(minHotWindow, size/4)),
		maxHot:  uint32(min(maxHotWindow, size/4)),
		maxItem: size - recHeader - int(pageSize()),
	}
	field := func(off int) unsafe.Pointer { return unsafe.Add(base, off) }
	q.wlock = robustLock{(*uint64)(field(offWlock))}
	q.rlock = robustLock{(*uint64)(field(offRlock))}
	q.tail = (*uint64)(field(offTail))
	q.head = (*uint64)(field(offHead))
	q.tailLow = (*uint32)(field(offTail))
	q.headLow = (*uint32)(field(offHead))
	q.released = (*uint32)(field(offReleased))
	q.dataWaiters = (*uint32)(field(offDataWaiters))
	q.spaceWaiters = (*uint32)(field(offSpaceWaiters))
	q.done = (*uint32)(field(offDone))
	q.joinWaiters = (*uint32)(field(offJoinWaiters))
	q.hints = (*[2]uint32)(field(offHints))
	q.passed = (*[2]uint32)(field(offPassed))
	q.hot = (*uint32)(field(offHot))
	return q, nil
}

// init writes the header of a new queue (whose file is all zeroes).
func (q *Queue) init(maxItems uint32) {
	q.maxItems = maxItems
	h := unsafe.Slice((*byte)(q.base), headerUsed)
	le := binary.LittleEndian
	le.PutUint32(h[offVersion:], queueVersion)
	le.PutUint32(h[offHeaderSize:], q.hdrSize)
	le.PutUint32(h[offRingSize:], q.size)
	le.PutUint32(h[offMaxItems:], maxItems)
	atomic.StoreUint32(q.hot, q.minHot)
	atomic.StoreUint64((*uint64)(q.base), queueMagic)
}

// Fd returns the descriptor of the queue's memory file (close-on-exec),
// valid until Close: hand it to a child process, which calls OpenQueue.
func (q *Queue) Fd() int { return int(q.file.Fd()) }

// MaxItems returns the bound on the number of items, 0 if unbounded.
func (q *Queue) MaxItems() int { return int(q.maxItems) }

// MaxItemSize returns the largest payload the queue accepts.
func (q *Queue) MaxItemSize() int { return q.maxItem }

// RingSize returns the size of the shared ring.
func (q *Queue) RingSize() int { return int(q.size) }

// Close unmaps the queue from this process and closes its descriptor,
// after the operations in progress in this process return. The queue lives
// on in the other processes that map it.
func (q *Queue) Close() error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil
	}
	q.closed = true
	err := unix.MunmapPtr(q.base, q.mapLen)
	if cerr := q.file.Close(); err == nil {
		err = cerr
	}
	q.ring = nil
	return err
}

func (q *Queue) enter() error {
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return ErrQueueClosed
	}
	return nil
}

func (q *Queue) leave() { q.mu.RUnlock() }

// Len returns the number of items in the queue: put and not yet taken.
func (q *Queue) Len() int {
	if q.enter() != nil {
		return 0
	}
	defer q.leave()
	return q.lenNow()
}

func (q *Queue) lenNow() int {
	h := atomic.LoadUint64(q.head)
	t := atomic.LoadUint64(q.tail)
	return int(uint32(t>>32) - uint32(h>>32))
}

func align8(n uint32) uint32 { return (n + 7) &^ 7 }

// Put appends item, waiting up to timeout for room on a bounded queue.
// An unbounded queue never waits for room: when its ring is full it
// returns ErrRingFull.
func (q *Queue) Put(item []byte, timeout time.Duration) error {
	items := [1][]byte{item}
	_, err := q.PutBatch(items[:], timeout)
	return err
}

// PutBatch appends items in order, as many at a time as there is room
// for, each group published at once. It returns how many were put: all of
// them unless err is not nil (ErrQueueFull when the deadline passed, or
// ErrRingFull, or ErrLockBusy). An item too large for the ring fails the
// whole batch with ErrItemTooLarge before anything is put.
func (q *Queue) PutBatch(items [][]byte, timeout time.Duration) (int, error) {
	if err := q.enter(); err != nil {
		return 0, err
	}
	defer q.leave()
	for _, it := range items {
		if len(it) > q.maxItem {
			return 0, ErrItemTooLarge
		}
	}
	dl := newDeadline(timeout)
	put := 0
	for put < len(items) {
		if q.maxItems != 0 && !q.waitRoom(q.maxItems, dl) {
			return put, ErrQueueFull
		}
		if ok, _ := q.wlock.lock(dl); !ok {
			return put, ErrLockBusy
		}
		n, noRoom := q.appendLocked(items[put:], false)
		if n == 0 && noRoom {
			if !q.catchUp(dl) {
				q.wlock.unlock()
				return put, ErrLockBusy
			}
			// Now that released is up to date, a jump may be needed.
			n, noRoom = q.appendLocked(items[put:], true)
		}
		q.wlock.unlock()
		if n > 0 {
			put += n
			wakeAll(q.tailLow, q.dataWaiters)
			continue
		}
		if noRoom {
			if q.maxItems == 0 {
				return put, ErrRingFull
			}
			if !q.waitRing(dl) {
				return put, ErrQueueFull
			}
		}
	}
	return put, nil
}

// waitRoom waits until the queue holds fewer than limit items.
func (q *Queue) waitRoom(limit uint32, dl *deadline) bool {
	for {
		h := atomic.LoadUint64(q.head)
		t := atomic.LoadUint64(q.tail)
		if uint32(t>>32)-uint32(h>>32) < limit {
			return true
		}
		if !waitChange(q.headLow, uint32(h), q.spaceWaiters, dl, putSpin) {
			return false
		}
	}
}

// waitRing waits for consumers to take something (room in the ring).
func (q *Queue) waitRing(dl *deadline) bool {
	h := atomic.LoadUint32(q.headLow)
	return waitChange(q.headLow, h, q.spaceWaiters, dl, putSpin)
}

// catchUp makes all consumed space reusable now (rather than in batches),
// for a producer that found the ring full. It also takes a skip record
// that is the next record to take: that is the end of a lap that a
// producer left early, and the room beyond it is free. The caller holds
// wlock (so tail is stable). It reports whether it could take rlock.
func (q *Queue) catchUp(dl *deadline) bool {
	ok, _ := q.rlock.lock(dl)
	if !ok {
		return false
	}
	h := atomic.LoadUint64(q.head)
	pos := uint32(h)
	if avail := uint32(atomic.LoadUint64(q.tail)) - pos; avail > 0 && avail <= 2*q.size {
		if length, kind := q.readHeader(pos & q.mask); kind == kindSkip && length <= avail && length&7 == 0 {
			q.passHole(pos)
			pos += length
			atomic.StoreUint64(q.head, h&^0xffffffff|uint64(pos))
		}
	}
	q.releaseLocked(pos, true)
	q.rlock.unlock()
	return true
}

// appendLocked writes as many of items as fit (by count and by room) and
// publishes them with one store of tail. It returns how many it wrote, and
// whether it stopped for want of room in the ring. The caller holds wlock.
//
// Where a record goes: after the previous one, unless
//   - it would end beyond the hot window, what is in flight is at most
//     half of what precedes it in this lap and half the largest hot
//     window, and no skip record is in flight: then back to offset 0 (a
//     skip record ends the lap), whose pages are still mapped;
//   - it does not fit because the oldest records of the lap it left are
//     still in flight (the consumers are slow, or stopped): then it jumps
//     over them (a second skip record) to the room the first skip left at
//     the end of the ring. So going back early costs little room: until
//     the consumers pass the first skip record, the ring can hold all but
//     the records they take of the lap left (at most maxHot/2 bytes were
//     in flight there) and the room the jump left behind (less than the
//     record that jumped). Only mayJump calls jump: the
//     caller first brings released up to date (catchUp), so that a stale
//     released does not cause a needless jump; and only over a skip
//     record that ended a lap (one jump over another would cut the free
//     room into pieces).
func (q *Queue) appendLocked(items [][]byte, mayJump bool) (n int, noRoom bool) {
	t := atomic.LoadUint64(q.tail)
	pos, count := uint32(t), uint32(t>>32)
	h := atomic.LoadUint64(q.head)
	head, taken := uint32(h), uint32(h>>32)
	rel := atomic.LoadUint32(q.released)
	holes, nh := q.liveHoles(head, pos)
	for _, it := range items {
		if q.maxItems != 0 && count-taken >= q.maxItems {
			break
		}
		need := align8(recHeader + uint32(len(it)))
		off := pos & q.mask
		start, placed := pos, false
		// A skip record's header at pos must fit too.
		canSkip := q.fits(rel, pos, holes[:nh], pos, recHeader)
		if canSkip && nh == 0 && off != 0 && off+need > atomic.LoadUint32(q.hot) &&
			pos-head <= off/2 && pos-head <= q.maxHot/2 {
			back := pos + (q.size - off)
			if q.fits(rel, pos+recHeader, holes[:nh], back, need+recHeader) {
				q.adaptHot(rel, pos, pos-head+need)
				q.putHeader(off, q.size-off, kindSkip)
				holes[nh] = q.addHole(pos, q.size-off, holes[:nh])
				nh++
				start, placed = back, true
			}
		}
		// After going back, leave room for the skip record of a jump.
		if !placed && q.fits(rel, pos, holes[:nh], pos, need+reserve(nh)) {
			placed = true
		}
		if !placed && canSkip && mayJump && nh == 1 && (holes[0].at+holes[0].length)&q.mask == 0 {
			over := holes[0].at + recHeader + q.size // just after that skip record, a lap later
			if uint64(over-rel) >= uint64(pos-rel)+recHeader && q.fits(rel, pos+recHeader, holes[:nh], over, need) {
				q.putHeader(off, over-pos, kindSkip)
				holes[nh] = q.addHole(pos, over-pos, holes[:nh])
				nh++
				start, placed = over, true
			}
		}
		if !placed {
			noRoom = true
			break
		}
		o := start & q.mask
		q.putHeader(o, uint32(len(it)), kindItem)
		copy(q.ring[o+recHeader:], it)
		pos = start + need
		count++
		n++
	}
	if n > 0 {
		atomic.StoreUint64(q.tail, uint64(count)<<32|uint64(pos))
	}
	return n, noRoom
}

// adaptHot sets the hot window, as a producer goes back to the start of
// the ring with inFlight bytes in flight (its next record included): four
// times that, so that the consumers can take what is in flight while the
// producers fill the next lap, within the bounds. It shrinks by halves,
// punching out the pages it gives up (but those of records in flight,
// from rel to pos). The caller holds wlock.
func (q *Queue) adaptHot(rel, pos, inFlight uint32) {
	w := atomic.LoadUint32(q.hot)
	want := q.minHot
	for want < q.maxHot && want < 4*inFlight {
		want <<= 1
	}
	switch {
	case want > w:
		atomic.StoreUint32(q.hot, want)
	case want < w/2 && w/2 >= q.minHot:
		atomic.StoreUint32(q.hot, w/2)
		punch := [][2]uint32{{w / 2, w}}
		for _, r := range q.physical(rel, pos+recHeader-rel, nil) {
			punch = cut(punch, q.pages(r))
		}
		q.punchRanges(punch)
	}
}

// reserve is the room a record must leave after it, with nh holes in
// flight: with one (the producer went back to the start of the ring), the
// room for the skip record of a jump over the stalled lap.
func reserve(nh int) uint32 {
	if nh == 1 {
		return recHeader
	}
	return 0
}

// A hole is a skip record in flight: the positions after its header, up to
// at+length, hold nothing (their pages may hold later records, after a
// jump).
type hole struct{ at, length uint32 }

// liveHoles returns the skip records named by the hints that are in flight
// between head and tail, oldest first. A hint is written before the skip
// record it names is published, so one left by a producer that died is
// beyond tail, or names a record that is no skip: it is ignored.
func (q *Queue) liveHoles(head, tail uint32) (holes [2]hole, n int) {
	for i := range q.hints {
		x := atomic.LoadUint32(&q.hints[i])
		if x-head >= tail-head {
			continue
		}
		length, kind := q.readHeader(x & q.mask)
		if kind != kindSkip || length < recHeader || length&7 != 0 || length > tail-x {
			continue
		}
		holes[n] = hole{x, length}
		n++
	}
	if n == 2 && holes[1].at-head < holes[0].at-head {
		holes[0], holes[1] = holes[1], holes[0]
	}
	return holes, n
}

// addHole records a new skip record at x in a hint slot that names none
// of the live holes, and returns it as a hole.
func (q *Queue) addHole(x, length uint32, live []hole) hole {
	for i := range q.hints {
		slot := atomic.LoadUint32(&q.hints[i])
		used := false
		for _, h := range live {
			used = used || h.at == slot
		}
		if !used {
			atomic.StoreUint32(&q.hints[i], x)
			break
		}
	}
	return hole{x, length}
}

// fits reports whether a record of need bytes at position start would
// leave every record in flight intact: those between rel and end, but for
// the holes. Positions are compared as offsets from rel; a record in
// flight at p occupies the ring's bytes at p, p+size and p+2*size.
func (q *Queue) fits(rel, end uint32, holes []hole, start, need uint32) bool {
	size := uint64(q.size)
	s := uint64(start - rel)
	e := s + uint64(need)
	if e > 2*size {
		return false
	}
	from := uint64(0)
	check := func(a, b uint64) bool {
		for k := uint64(1); k <= 2; k++ {
			if a+k*size < e && s < b+k*size {
				return false
			}
		}
		return true
	}
	for _, h := range holes {
		hs := uint64(h.at + recHeader - rel)
		if hs > from && !check(from, hs) {
			return false
		}
		from = uint64(h.at + h.length - rel)
	}
	if last := uint64(end - rel); last > from && !check(from, last) {
		return false
	}
	return true
}

func (q *Queue) putHeader(off, length, kind uint32) {
	binary.LittleEndian.PutUint64(q.ring[off:], uint64(kind)<<32|uint64(length))
}

func (q *Queue) readHeader(off uint32) (length, kind uint32) {
	v := binary.LittleEndian.Uint64(q.ring[off:])
	return uint32(v), uint32(v >> 32)
}

// Get removes the oldest item, waiting up to timeout for one, copies it
// into dst and returns its length. If it does not fit, Get returns a
// *BufferTooSmallError and leaves it in the queue.
func (q *Queue) Get(dst []byte, timeout time.Duration) (int, error) {
	_, n, err := q.take(dst, 1, false, timeout)
	return n, err
}

// GetBatch removes up to limit items, waiting up to timeout for the first
// (not for more), and writes them into dst as records of an 8-byte
// little-endian length and the item (the layout SplitRecords reads). It
// takes as many as fit; if not even the first fits, it returns a
// *BufferTooSmallError. It returns the number of items and of bytes.
func (q *Queue) GetBatch(dst []byte, limit int, timeout time.Duration) (items, n int, err error) {
	return q.take(dst, limit, true, timeout)
}

func (q *Queue) take(dst []byte, limit int, framed bool, timeout time.Duration) (int, int, error) {
	if err := q.enter(); err != nil {
		return 0, 0, err
	}
	defer q.leave()
	dl := newDeadline(timeout)
	for {
		h := atomic.LoadUint64(q.head)
		t := atomic.LoadUint64(q.tail)
		if uint32(h) == uint32(t) {
			if !waitChange(q.tailLow, uint32(t), q.dataWaiters, dl, getSpin) {
				return 0, 0, ErrQueueEmpty
			}
			continue
		}
		if ok, _ := q.rlock.lock(dl); !ok {
			return 0, 0, ErrLockBusy
		}
		items, n, err := q.takeLocked(dst, limit, framed)
		q.rlock.unlock()
		if items > 0 {
			wakeAll(q.headLow, q.spaceWaiters)
			return items, n, nil
		}
		if err != nil {
			return 0, 0, err
		}
		if dl.expired() {
			return 0, 0, ErrQueueEmpty
		}
	}
}

// takeLocked copies up to limit items out and publishes their removal with
// one store of head. The caller holds rlock.
func (q *Queue) takeLocked(dst []byte, limit int, framed bool) (items, n int, err error) {
	h := atomic.LoadUint64(q.head)
	pos, count := uint32(h), uint32(h>>32)
	avail := uint32(atomic.LoadUint64(q.tail)) - pos
	if avail > 2*q.size {
		return 0, 0, ErrQueueCorrupt
	}
	for items < limit && avail > 0 {
		off := pos & q.mask
		length, kind := q.readHeader(off)
		if kind == kindSkip {
			if length < recHeader || length > avail || length&7 != 0 {
				return 0, 0, ErrQueueCorrupt
			}
			if items > 0 {
				break // one skip record per call: see passHole
			}
			q.passHole(pos)
			pos += length
			avail -= length
			continue
		}
		rec := align8(recHeader + length)
		if kind != kindItem || length > uint32(q.maxItem) || rec > avail {
			return 0, 0, ErrQueueCorrupt
		}
		size := int(length)
		if framed {
			size += recordHeader
		}
		if n+size > len(dst) {
			if items == 0 {
				return 0, 0, &BufferTooSmallError{Need: size}
			}
			break
		}
		if framed {
			binary.LittleEndian.PutUint64(dst[n:], uint64(length))
			n += recordHeader
		}
		n += copy(dst[n:], q.ring[off+recHeader:off+recHeader+length])
		pos += rec
		avail -= rec
		count++
		items++
	}
	if pos != uint32(h) {
		atomic.StoreUint64(q.head, uint64(count)<<32|uint64(pos))
		q.releaseLocked(pos, false)
	}
	return items, n, nil
}

// passHole is called by a consumer about to pass the skip record at x:
// it releases what was consumed before (so that no earlier passed skip
// record is pending), then notes x in a free slot of passed, for
// releaseLocked, before head moves past it. The caller holds rlock.
func (q *Queue) passHole(x uint32) {
	q.releaseLocked(uint32(atomic.LoadUint64(q.head)), true)
	rel := atomic.LoadUint32(q.released)
	for i := range q.passed {
		// A slot is free unless it names a skip record between released
		// and x: passed, its skipped part not yet released.
		if y := atomic.LoadUint32(&q.passed[i]); y-rel >= x-rel {
			atomic.StoreUint32(&q.passed[i], x)
			return
		}
	}
	atomic.StoreUint32(&q.passed[0], x)
}

// releaseLocked lets producers reuse the ring up to pos (rounded down to a
// page), punching consumed pages beyond the hot window out of the file.
// Unless force is set, it waits until that is worth a system call. The
// caller holds rlock.
//
// The released range may span skipped laps whose pages hold records still
// in flight (after a jump): those pages, and any page with a byte of a
// record in flight, are kept.
func (q *Queue) releaseLocked(pos uint32, force bool) {
	rel := atomic.LoadUint32(q.released)
	target := pos &^ (pageSize() - 1)
	n := target - rel
	if n == 0 || n > 2*q.size {
		return
	}
	punch := q.physical(rel, n, nil)
	punch = cut(punch, [2]uint32{0, atomic.LoadUint32(q.hot)}) // the hot window stays
	head := uint32(atomic.LoadUint64(q.head))
	tail := uint32(atomic.LoadUint64(q.tail))
	holes, nh := q.liveHoles(head, tail)
	from := head
	keep := func(a, b uint32) { // positions [a, b) are in flight
		for _, r := range q.physical(a, b-a, nil) {
			punch = cut(punch, q.pages(r))
		}
	}
	for _, h := range holes[:nh] {
		if h.at+recHeader != from {
			keep(from, h.at+recHeader)
		}
		from = h.at + h.length
	}
	if tail != from {
		keep(from, tail)
	}
	// Nor are the skipped parts of laps: a producer that has not yet seen
	// the consumers pass a skip record may be writing there right now
	// (its jump), records it has not published.
	for i := range q.passed {
		x := atomic.LoadUint32(&q.passed[i])
		if x-rel >= n {
			continue
		}
		if length, kind := q.readHeader(x & q.mask); kind == kindSkip && length >= recHeader {
			keep(x+recHeader, x+length)
		}
	}
	var bytes uint32
	for _, r := range punch {
		bytes += r[1] - r[0]
	}
	if bytes > 0 {
		if bytes < releaseBatch && !force {
			return
		}
		q.punchRanges(punch)
	}
	atomic.StoreUint32(q.released, target)
}

// pages returns the whole pages that hold ring bytes r[0] to r[1].
func (q *Queue) pages(r [2]uint32) [2]uint32 {
	page := pageSize()
	return [2]uint32{r[0] &^ (page - 1), min((r[1]+page-1)&^(page-1), q.size)}
}

// punchRanges returns the ring's pages in ranges to the system.
func (q *Queue) punchRanges(ranges [][2]uint32) {
	for _, r := range ranges {
		if r[1] > r[0] {
			// Best effort: if the file system cannot punch, the pages stay.
			_ = unix.Fallocate(int(q.file.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE,
				int64(q.hdrSize)+int64(r[0]), int64(r[1]-r[0]))
		}
	}
}

// physical appends the ring ranges [from, to) of the n bytes from position
// pos to out.
func (q *Queue) physical(pos, n uint32, out [][2]uint32) [][2]uint32 {
	if n >= q.size {
		return append(out, [2]uint32{0, q.size})
	}
	s := pos & q.mask
	if s+n <= q.size {
		return append(out, [2]uint32{s, s + n})
	}
	return append(out, [2]uint32{s, q.size}, [2]uint32{0, s + n - q.size})
}

// cut removes the range r from the ranges in set.
func cut(set [][2]uint32, r [2]uint32) [][2]uint32 {
	out := set[:0:0]
	for _, x := range set {
		if r[1] <= x[0] || x[1] <= r[0] {
			out = append(out, x)
			continue
		}
		if x[0] < r[0] {
			out = append(out, [2]uint32{x[0], r[0]})
		}
		if r[1] < x[1] {
			out = append(out, [2]uint32{r[1], x[1]})
		}
	}
	return out
}

var pageSizeOnce = sync.OnceValue(func() uint32 { return uint32(os.Getpagesize()) })

func pageSize() uint32 { return pageSizeOnce() }

// TaskDone marks one item as processed (JoinableQueue.task_done): an
// error if every item put has already been marked.
func (q *Queue) TaskDone() error {
	if err := q.enter(); err != nil {
		return err
	}
	defer q.leave()
	for {
		d := atomic.LoadUint32(q.done)
		if d == uint32(atomic.LoadUint64(q.tail)>>32) {
			return ErrTaskDone
		}
		if atomic.CompareAndSwapUint32(q.done, d, d+1) {
			break
		}
	}
	wakeAll(q.done, q.joinWaiters)
	return nil
}

// Unfinished returns the number of items put and not yet marked done.
func (q *Queue) Unfinished() int {
	if q.enter() != nil {
		return 0
	}
	defer q.leave()
	return int(uint32(atomic.LoadUint64(q.tail)>>32) - atomic.LoadUint32(q.done))
}

// Join waits up to timeout until every item put has been marked done, and
// reports whether that happened.
func (q *Queue) Join(timeout time.Duration) (bool, error) {
	if err := q.enter(); err != nil {
		return false, err
	}
	defer q.leave()
	dl := newDeadline(timeout)
	for {
		d := atomic.LoadUint32(q.done)
		if d == uint32(atomic.LoadUint64(q.tail)>>32) {
			return true, nil
		}
		if !waitChange(q.done, d, q.joinWaiters, dl, 0) {
			return false, nil
		}
	}
}
