package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Channel connects two processes through one anonymous memory file: two
// one-way byte streams, Down (written by the process that created the
// channel, the owner, and read by its peer) and Up (written by the peer,
// read by the owner). A pool gives each worker one channel: tasks go down,
// results come up.
//
// # Streams
//
// A stream is a ring of RingSize bytes (a power of two) with two 32-bit
// positions that count bytes modulo 2^32: tail, written only by the writer,
// and head, written only by the reader. tail-head bytes are readable;
// RingSize-(tail-head) are free. Data wraps around the end of the ring (it
// is copied in two parts), so a stream carries messages of any size: one
// larger than the ring goes through in pieces, as through a pipe. The
// writer copies bytes in, then publishes them with one atomic store of
// tail; the reader copies bytes out, then frees them with one atomic store
// of head. A process that dies at any instant leaves the other side with a
// consistent stream (the owner of a dead peer's channel simply drops it).
//
// # Messages
//
// A message is a MessageHeaderSize-byte header — payload length (u64), tag
// (u64), kind (u32), zero (u32), little-endian — followed by the payload.
// A writer starts a message only when the whole header fits in the free
// space, so a reader at a message boundary sees either no header or all of it.
//
// # Waiting
//
// Positions are futex words. A reader waiting for data sets the stream's
// data-waiters flag and sleeps on tail; a writer waiting for room sets the
// space-waiters flag and sleeps on head; whoever moves a position wakes the
// other side only if its flag is set. The Up stream of a pool's channels
// does not wake its reader on tail: its writer rings the pool's Doorbell
// instead, so that one thread can wait for the results of every worker.
//
// # Cancellation
//
// The header also holds the peer's progress: Started, the sequence number
// (the tag) of the last task it began; Running, that of the task it runs now
// (0 between tasks); Phase, a word the peer sets for the owner (a worker's
// progress through its start); and Revoked, a 64-bit set of sequence numbers modulo 64
// that the owner takes back. A peer about to begin task s stores Started = s,
// then reads Revoked: if bit s%64 is set it clears it and skips the task. An
// owner revoking s sets the bit, then reads Started: if Started < s the peer
// will skip s; otherwise it began s already. Both sides use sequentially
// consistent operations, so at least one of them sees the other; the
// owner then clears the bit itself, and whether it was still set says
// whether the peer skipped the task. Revoke's answer is exact.
type Channel struct {
	file     *os.File
	mem      []byte
	ringSize uint32
	Down     Stream
	Up       Stream
	started  *uint64
	running  *uint64
	revoked  *uint64
	phase    *uint32
	soft     *uint64
}

// Stream is one direction of a Channel.
type Stream struct {
	ring         []byte
	mask         uint32
	tail, head   *uint32
	dataWaiters  *uint32
	spaceWaiters *uint32
	bell         *Doorbell // if set, rung instead of waking readers on tail
}

// Layout of a channel's memory file. The offsets are shared with the
// worker's implementation of the peer side (see pybind's wire tests).
const (
	ChannelMagic      = 0x314e_4148_4350_4f47 // "GOPCHAN1"
	ChannelVersion    = 1
	ChannelHeaderSize = 4096

	ChanOffMagic             = 0
	ChanOffVersion           = 8
	ChanOffRingSize          = 12
	ChanOffDownTail          = 64
	ChanOffDownDataWaiters   = 68
	ChanOffDownHead          = 128
	ChanOffDownSpaceWaiters  = 132
	ChanOffUpTail            = 192
	ChanOffUpDataWaiters     = 196
	ChanOffUpHead            = 256
	ChanOffUpSpaceWaiters    = 260
	ChanOffStarted           = 320
	ChanOffRunning           = 328
	ChanOffRevoked           = 384
	ChanOffPhase             = 392
	ChanOffSoftLimit         = 400
	MessageHeaderSize        = 24
	DefaultChannelRingSize   = 1 << 20
	minChannelRingSize       = 4096
	maxChannelRingSize       = 1 << 30
	channelReaderSpinDefault = 20 * time.Microsecond
)

// ErrChannelCorrupt means a message header made no sense: the peer broke
// the protocol.
var ErrChannelCorrupt = errors.New("channel: corrupt message header")

// NewChannel creates a channel whose streams have rings of ringSize bytes
// (rounded up to a power of two; 0 for DefaultChannelRingSize).
func NewChannel(ringSize int) (*Channel, error) {
	if ringSize == 0 {
		ringSize = DefaultChannelRingSize
	}
	if ringSize < minChannelRingSize || ringSize > maxChannelRingSize {
		return nil, fmt.Errorf("channel: ring size out of range: %d", ringSize)
	}
	size := uint32(minChannelRingSize)
	for int(size) < ringSize {
		size <<= 1
	}
	file, err := newMemFile("gopool-channel", ChannelHeaderSize+2*int64(size))
	if err != nil {
		return nil, err
	}
	c, err := mapChannel(file, size)
	if err != nil {
		file.Close()
		return nil, err
	}
	binary.LittleEndian.PutUint32(c.mem[ChanOffVersion:], ChannelVersion)
	binary.LittleEndian.PutUint32(c.mem[ChanOffRingSize:], size)
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&c.mem[ChanOffMagic])), ChannelMagic)
	return c, nil
}

// OpenChannel maps the channel whose memory file is the descriptor fd (the
// peer's side); fd stays the caller's.
func OpenChannel(fd int) (*Channel, error) {
	file, err := inheritedMemFile(fd, "gopool-channel")
	if err != nil {
		return nil, err
	}
	var hdr [16]byte
	if _, err := file.ReadAt(hdr[:], 0); err != nil {
		file.Close()
		return nil, fmt.Errorf("channel: descriptor %d: %w", fd, err)
	}
	if binary.LittleEndian.Uint64(hdr[ChanOffMagic:]) != ChannelMagic ||
		binary.LittleEndian.Uint32(hdr[ChanOffVersion:]) != ChannelVersion {
		file.Close()
		return nil, fmt.Errorf("channel: descriptor %d is not a channel", fd)
	}
	c, err := mapChannel(file, binary.LittleEndian.Uint32(hdr[ChanOffRingSize:]))
	if err != nil {
		file.Close()
		return nil, err
	}
	return c, nil
}

func mapChannel(file *os.File, size uint32) (*Channel, error) {
	if size < minChannelRingSize || size > maxChannelRingSize || size&(size-1) != 0 {
		return nil, fmt.Errorf("channel: bad ring size %d", size)
	}
	mem, err := mapMemFile(file, ChannelHeaderSize+2*int(size))
	if err != nil {
		return nil, err
	}
	u32 := func(off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	u64 := func(off int) *uint64 { return (*uint64)(unsafe.Pointer(&mem[off])) }
	c := &Channel{file: file, mem: mem, ringSize: size}
	c.Down = Stream{
		ring: mem[ChannelHeaderSize : ChannelHeaderSize+int(size)], mask: size - 1,
		tail: u32(ChanOffDownTail), head: u32(ChanOffDownHead),
		dataWaiters: u32(ChanOffDownDataWaiters), spaceWaiters: u32(ChanOffDownSpaceWaiters),
	}
	c.Up = Stream{
		ring: mem[ChannelHeaderSize+int(size):], mask: size - 1,
		tail: u32(ChanOffUpTail), head: u32(ChanOffUpHead),
		dataWaiters: u32(ChanOffUpDataWaiters), spaceWaiters: u32(ChanOffUpSpaceWaiters),
	}
	c.started, c.running, c.revoked = u64(ChanOffStarted), u64(ChanOffRunning), u64(ChanOffRevoked)
	c.phase = u32(ChanOffPhase)
	c.soft = u64(ChanOffSoftLimit)
	return c, nil
}

// File returns the channel's memory file (close-on-exec), to hand to the
// peer.
func (c *Channel) File() *os.File { return c.file }

// RingSize returns the size of each stream's ring.
func (c *Channel) RingSize() int { return int(c.ringSize) }

// Close unmaps the channel and closes its descriptor. Nobody may use it
// any more.
func (c *Channel) Close() error {
	mem := c.mem
	c.mem = nil
	return unmapAndClose(mem, c.file)
}

// RingUpWith makes the Up stream ring bell when it publishes data.
func (c *Channel) RingUpWith(bell *Doorbell) { c.Up.bell = bell }

// Started returns the sequence number of the last task the peer began.
func (c *Channel) Started() uint64 { return atomic.LoadUint64(c.started) }

// Running returns the sequence number of the task the peer runs, or 0.
func (c *Channel) Running() uint64 { return atomic.LoadUint64(c.running) }

// Revoke takes task seq back, unless the peer began it already: it
// reports whether the peer will skip it.
func (c *Channel) Revoke(seq uint64) bool {
	bit := uint64(1) << (seq % 64)
	atomic.OrUint64(c.revoked, bit)
	if atomic.LoadUint64(c.started) < seq {
		return true // its Begin(seq) will see the bit
	}
	// Its Begin(seq) took the bit away (it skips) unless it ran first;
	// then the bit is cleared here, so that it does not catch task seq+64.
	return atomic.AndUint64(c.revoked, ^bit)&bit == 0
}

// Begin is the peer's side of Revoke: it records that task seq begins,
// unless it was revoked, and reports whether to run it.
func (c *Channel) Begin(seq uint64) bool {
	atomic.StoreUint64(c.started, seq)
	bit := uint64(1) << (seq % 64)
	if atomic.AndUint64(c.revoked, ^bit)&bit != 0 {
		return false
	}
	atomic.StoreUint64(c.running, seq)
	return true
}

// Phase returns what the peer last recorded with SetPhase (0 at first).
func (c *Channel) Phase() uint32 { return atomic.LoadUint32(c.phase) }

// SetPhase records the peer's phase, for the owner to read (its meaning
// is the owner's protocol).
func (c *Channel) SetPhase(phase uint32) { atomic.StoreUint32(c.phase, phase) }

// SetSoftLimit records that task seq has passed its soft time limit.
func (c *Channel) SetSoftLimit(seq uint64) { atomic.StoreUint64(c.soft, seq) }

// SoftLimit returns the last task that passed its soft time limit.
func (c *Channel) SoftLimit() uint64 { return atomic.LoadUint64(c.soft) }

// End is the peer's note that it no longer runs a task.
func (c *Channel) End() { atomic.StoreUint64(c.running, 0) }

// Readable returns how many bytes can be read.
func (s *Stream) Readable() uint32 {
	return atomic.LoadUint32(s.tail) - atomic.LoadUint32(s.head)
}

// Free returns how many bytes can be written.
func (s *Stream) Free() uint32 {
	return uint32(len(s.ring)) - (atomic.LoadUint32(s.tail) - atomic.LoadUint32(s.head))
}

// Write copies as much of p as fits, publishes it and returns how much
// that was. Only the writer calls it.
func (s *Stream) Write(p []byte) int {
	tail := atomic.LoadUint32(s.tail)
	n := min(uint32(len(p)), uint32(len(s.ring))-(tail-atomic.LoadUint32(s.head)))
	if n == 0 {
		return 0
	}
	s.copyIn(tail, p[:n])
	s.publish(tail + n)
	return int(n)
}

func (s *Stream) copyIn(pos uint32, p []byte) {
	off := pos & s.mask
	k := copy(s.ring[off:], p)
	copy(s.ring, p[k:])
}

func (s *Stream) publish(tail uint32) {
	atomic.StoreUint32(s.tail, tail)
	if s.bell != nil {
		s.bell.Ring()
	} else {
		wakeAll(s.tail, s.dataWaiters)
	}
}

// Read copies up to len(dst) readable bytes into dst, frees them and
// returns how many it copied. Only the reader calls it.
func (s *Stream) Read(dst []byte) int {
	head := atomic.LoadUint32(s.head)
	n := min(uint32(len(dst)), atomic.LoadUint32(s.tail)-head)
	if n == 0 {
		return 0
	}
	s.copyOut(head, dst[:n])
	atomic.StoreUint32(s.head, head+n)
	wakeAll(s.head, s.spaceWaiters)
	return int(n)
}

func (s *Stream) copyOut(pos uint32, dst []byte) {
	off := pos & s.mask
	k := copy(dst, s.ring[off:])
	copy(dst[k:], s.ring)
}

// WaitData waits up to timeout (spinning for spin first) until something
// is readable, and reports whether it is.
func (s *Stream) WaitData(timeout, spin time.Duration) bool {
	tail := atomic.LoadUint32(s.tail)
	if tail != atomic.LoadUint32(s.head) {
		return true
	}
	return waitChange(s.tail, tail, s.dataWaiters, newDeadline(timeout), spin)
}

// WaitSpace waits up to timeout until at least n bytes are free (n at most
// the ring size), and reports whether they are.
func (s *Stream) WaitSpace(n uint32, timeout, spin time.Duration) bool {
	dl := newDeadline(timeout)
	for {
		head := atomic.LoadUint32(s.head)
		if uint32(len(s.ring))-(atomic.LoadUint32(s.tail)-head) >= n {
			return true
		}
		if !waitChange(s.head, head, s.spaceWaiters, dl, spin) {
			return false
		}
	}
}

// MessageHeader is the head of a message in a stream.
type MessageHeader struct {
	Length uint64
	Tag    uint64
	Kind   uint32
}

func (h MessageHeader) encode(dst *[MessageHeaderSize]byte) {
	binary.LittleEndian.PutUint64(dst[0:], h.Length)
	binary.LittleEndian.PutUint64(dst[8:], h.Tag)
	binary.LittleEndian.PutUint32(dst[16:], h.Kind)
	binary.LittleEndian.PutUint32(dst[20:], 0)
}

// MessageWriter writes messages to a stream, each possibly in several
// steps when the stream has not room for all of it. One writer per stream.
type MessageWriter struct {
	s       *Stream
	pending [][]byte // the rest of the current message's payload
	busy    bool     // a message is under way
}

// NewMessageWriter returns a writer of messages to s.
func NewMessageWriter(s *Stream) *MessageWriter { return &MessageWriter{s: s} }

// Busy reports whether a message is only partly written.
func (w *MessageWriter) Busy() bool { return w.busy }

// Start begins a message whose payload is the parts given, one after the
// other, and writes as much of it as fits at once. It reports false,
// writing nothing, if not even the header fits. Call Continue until Busy
// reports false. The parts must not change until then.
func (w *MessageWriter) Start(h MessageHeader, parts ...[]byte) bool {
	if w.busy {
		panic("shm: MessageWriter.Start while a message is under way")
	}
	s := w.s
	tail := atomic.LoadUint32(s.tail)
	free := uint32(len(s.ring)) - (tail - atomic.LoadUint32(s.head))
	if free < MessageHeaderSize {
		return false
	}
	parts = append([][]byte(nil), parts...) // consumed below: the caller's stay whole
	h.Length = 0
	for _, p := range parts {
		h.Length += uint64(len(p))
	}
	var hdr [MessageHeaderSize]byte
	h.encode(&hdr)
	s.copyIn(tail, hdr[:])
	pos := tail + MessageHeaderSize
	free -= MessageHeaderSize
	for len(parts) > 0 && free > 0 {
		n := min(uint32(len(parts[0])), free)
		s.copyIn(pos, parts[0][:n])
		pos, free = pos+n, free-n
		if parts[0] = parts[0][n:]; len(parts[0]) == 0 {
			parts = parts[1:]
		}
	}
	s.publish(pos)
	w.pending, w.busy = parts, len(parts) > 0
	return true
}

// Continue writes more of the message under way, as much as fits.
func (w *MessageWriter) Continue() {
	for w.busy {
		n := w.s.Write(w.pending[0])
		if w.pending[0] = w.pending[0][n:]; len(w.pending[0]) == 0 {
			w.pending = w.pending[1:]
		}
		if len(w.pending) == 0 {
			w.pending, w.busy = nil, false
		}
		if n == 0 || w.s.Free() == 0 {
			return
		}
	}
}

// Needed returns how many free bytes the writer waits for: the header of a
// message not yet started, or a piece of the one under way.
func (w *MessageWriter) Needed() uint32 {
	if !w.busy {
		return MessageHeaderSize
	}
	left := 0
	for _, p := range w.pending {
		left += len(p)
	}
	return uint32(min(left, len(w.s.ring)/2))
}

// MessageReader reads messages from a stream, assembling each from as
// many pieces as it arrives in. One reader per stream.
type MessageReader struct {
	s       *Stream
	header  MessageHeader
	payload []byte
	filled  int
	busy    bool // a header was read, its payload is incomplete
	// MaxLength bounds the length a header may announce (0: no bound),
	// so that a corrupt header is an error rather than an allocation.
	MaxLength uint64
}

// NewMessageReader returns a reader of messages from s.
func NewMessageReader(s *Stream) *MessageReader { return &MessageReader{s: s} }

// Busy reports whether a message is only partly read.
func (r *MessageReader) Busy() bool { return r.busy }

// Next reads what is readable and returns the next complete message, if
// one is; ok is false when more must arrive first. The payload belongs to
// the caller.
func (r *MessageReader) Next() (h MessageHeader, payload []byte, ok bool, err error) {
	s := r.s
	if !r.busy {
		head := atomic.LoadUint32(s.head)
		if atomic.LoadUint32(s.tail)-head < MessageHeaderSize {
			return MessageHeader{}, nil, false, nil
		}
		var hdr [MessageHeaderSize]byte
		s.copyOut(head, hdr[:])
		h := MessageHeader{
			Length: binary.LittleEndian.Uint64(hdr[0:]),
			Tag:    binary.LittleEndian.Uint64(hdr[8:]),
			Kind:   binary.LittleEndian.Uint32(hdr[16:]),
		}
		if binary.LittleEndian.Uint32(hdr[20:]) != 0 || (r.MaxLength > 0 && h.Length > r.MaxLength) {
			return MessageHeader{}, nil, false, ErrChannelCorrupt
		}
		atomic.StoreUint32(s.head, head+MessageHeaderSize)
		wakeAll(s.head, s.spaceWaiters)
		r.header, r.payload, r.filled, r.busy = h, make([]byte, h.Length), 0, true
	}
	r.filled += s.Read(r.payload[r.filled:])
	if r.filled < len(r.payload) {
		return MessageHeader{}, nil, false, nil
	}
	h, payload = r.header, r.payload
	r.payload, r.busy = nil, false
	return h, payload, true, nil
}

// ErrTimeout is returned by the blocking message calls when time runs out.
var ErrTimeout = errors.New("channel: timed out")

// Read waits up to timeout for the next whole message.
func (r *MessageReader) Read(timeout, spin time.Duration) (MessageHeader, []byte, error) {
	dl := newDeadline(timeout)
	for {
		h, payload, ok, err := r.Next()
		if err != nil || ok {
			return h, payload, err
		}
		tail := atomic.LoadUint32(r.s.tail)
		if tail != atomic.LoadUint32(r.s.head) {
			continue
		}
		if !waitChange(r.s.tail, tail, r.s.dataWaiters, dl, spin) {
			return MessageHeader{}, nil, ErrTimeout
		}
	}
}

// Write writes a whole message, waiting up to timeout for room.
func (w *MessageWriter) Write(h MessageHeader, payload []byte, timeout time.Duration) error {
	dl := newDeadline(timeout)
	for !w.Start(h, payload) {
		if !w.s.WaitSpace(MessageHeaderSize, time.Until(dl.time()), 0) {
			return ErrTimeout
		}
	}
	for w.Busy() {
		if !w.s.WaitSpace(w.Needed(), time.Until(dl.time()), 0) {
			return ErrTimeout
		}
		w.Continue()
	}
	return nil
}
