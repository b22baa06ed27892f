package shm

import (
	"encoding/binary"
	"fmt"
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Doorbell is a counter in a page of shared memory that many processes
// ring and one process waits on: a pool's workers ring it after each piece
// of result they publish, and the pool's waiting threads sleep on it, so
// one thread can wait for every worker at once.
//
// The page also carries Spin, the number of nanoseconds a worker may spin
// while it waits for its next task; the owner lowers it to 0 when the
// machine has more runnable threads than CPUs, so that spinning never takes
// CPU from the work.
type Doorbell struct {
	file     *os.File
	mem      []byte
	count    *uint32
	sleepers *uint32
	spin     *uint32
}

// Layout of a doorbell's page, shared with the worker's implementation.
const (
	DoorbellMagic   = 0x314c_4c45_4250_4f47 // "GOPBELL1"
	DoorbellSize    = 4096
	BellOffMagic    = 0
	BellOffCount    = 64
	BellOffSleepers = 68
	BellOffSpin     = 128
)

// NewDoorbell creates a doorbell.
func NewDoorbell() (*Doorbell, error) {
	file, err := newMemFile("gopool-doorbell", DoorbellSize)
	if err != nil {
		return nil, err
	}
	b, err := mapDoorbell(file)
	if err != nil {
		file.Close()
		return nil, err
	}
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&b.mem[BellOffMagic])), DoorbellMagic)
	return b, nil
}

// OpenDoorbell maps the doorbell whose memory file is the descriptor fd;
// fd stays the caller's.
func OpenDoorbell(fd int) (*Doorbell, error) {
	file, err := inheritedMemFile(fd, "gopool-doorbell")
	if err != nil {
		return nil, err
	}
	var magic [8]byte
	if _, err := file.ReadAt(magic[:], BellOffMagic); err != nil || binary.LittleEndian.Uint64(magic[:]) != DoorbellMagic {
		file.Close()
		return nil, fmt.Errorf("doorbell: descriptor %d is not a doorbell", fd)
	}
	b, err := mapDoorbell(file)
	if err != nil {
		file.Close()
		return nil, err
	}
	return b, nil
}

func mapDoorbell(file *os.File) (*Doorbell, error) {
	mem, err := mapMemFile(file, DoorbellSize)
	if err != nil {
		return nil, err
	}
	u32 := func(off int) *uint32 { return (*uint32)(unsafe.Pointer(&mem[off])) }
	return &Doorbell{file: file, mem: mem, count: u32(BellOffCount), sleepers: u32(BellOffSleepers), spin: u32(BellOffSpin)}, nil
}

// File returns the doorbell's memory file (close-on-exec), to hand to the
// processes that ring it.
func (b *Doorbell) File() *os.File { return b.file }

// Close unmaps the doorbell and closes its descriptor.
func (b *Doorbell) Close() error {
	mem := b.mem
	b.mem = nil
	return unmapAndClose(mem, b.file)
}

// Count returns the number of rings so far (modulo 2^32). Read it before
// looking for work, then Wait for it to change.
func (b *Doorbell) Count() uint32 { return atomic.LoadUint32(b.count) }

// Ring bumps the count and wakes the sleepers, if any.
func (b *Doorbell) Ring() {
	atomic.AddUint32(b.count, 1)
	wakeAll(b.count, b.sleepers)
}

// Wait waits until the count differs from seen, spinning for spin first,
// for at most timeout; it reports whether the count changed.
func (b *Doorbell) Wait(seen uint32, timeout, spin time.Duration) bool {
	return waitChange(b.count, seen, b.sleepers, newDeadline(timeout), spin)
}

// SetWorkerSpin sets how long a worker may spin waiting for its next task.
func (b *Doorbell) SetWorkerSpin(d time.Duration) {
	atomic.StoreUint32(b.spin, uint32(d.Nanoseconds()))
}

// WorkerSpin returns how long a worker may spin waiting for its next task.
func (b *Doorbell) WorkerSpin() time.Duration {
	return time.Duration(atomic.LoadUint32(b.spin))
}
