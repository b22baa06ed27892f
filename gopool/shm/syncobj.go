package shm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync/atomic"
	"unsafe"
)

// The synchronisation objects (Mutex, Semaphore, Cond, Barrier) each live
// in a small anonymous memory file, like Event: other processes get one only
// by inheriting its descriptor. Every such file starts with the same
// header:
//
//	0   magic  u64  syncMagic
//	8   kind   u32  which object (syncKind*)
//	12  version u32
//	16  param  u32  the object's fixed parameter (a semaphore's maximum,
//	                a barrier's parties), written before the magic
//
// and the object's words follow from syncHeader on. Processes are named in
// shared memory by their lockerID (pid and start time, see robustLock), so
// that a process that died is recognised as dead (ownerAlive) even if its
// pid was reused.

const (
	syncMagic   = 0x31434e59_53504f47 // "GOPSYNC1"
	syncVersion = 1
	syncHeader  = 64

	syncKindMutex     = 1
	syncKindSemaphore = 2
	syncKindCond      = 3
	syncKindBarrier   = 4
)

var syncKindNames = map[uint32]string{
	syncKindMutex: "mutex", syncKindSemaphore: "semaphore", syncKindCond: "condition", syncKindBarrier: "barrier",
}

// ErrReleasedTooMany is returned by Mutex.Release on an unlocked mutex and by
// Semaphore.Release on a semaphore at its maximum (the stdlib's message).
var ErrReleasedTooMany = errors.New("semaphore or lock released too many times")

// syncMem is the mapped memory file of a synchronisation object.
type syncMem struct {
	file *os.File
	mem  []byte
}

// newSyncMem creates the memory file of an object of the given kind.
func newSyncMem(kind, param uint32, size int) (syncMem, error) {
	name := "gopool-" + syncKindNames[kind]
	file, err := newMemFile(name, int64(size))
	if err != nil {
		return syncMem{}, err
	}
	mem, err := mapMemFile(file, size)
	if err != nil {
		file.Close()
		return syncMem{}, err
	}
	le := binary.LittleEndian
	le.PutUint32(mem[8:], kind)
	le.PutUint32(mem[12:], syncVersion)
	le.PutUint32(mem[16:], param)
	atomic.StoreUint64((*uint64)(unsafe.Pointer(&mem[0])), syncMagic)
	return syncMem{file, mem}, nil
}

// openSyncMem maps the memory file of an object of the given kind from a
// descriptor this process inherited (its own duplicate: the caller keeps
// fd), and returns the object's parameter.
func openSyncMem(fd int, kind uint32, size int) (syncMem, uint32, error) {
	name := syncKindNames[kind]
	file, err := inheritedMemFile(fd, "gopool-"+name)
	if err != nil {
		return syncMem{}, 0, err
	}
	var head [syncHeader]byte
	if _, err := file.ReadAt(head[:], 0); err != nil {
		file.Close()
		return syncMem{}, 0, fmt.Errorf("descriptor %d is not a %s: %w", fd, name, err)
	}
	le := binary.LittleEndian
	if le.Uint64(head[0:]) != syncMagic || le.Uint32(head[8:]) != kind || le.Uint32(head[12:]) != syncVersion {
		file.Close()
		return syncMem{}, 0, fmt.Errorf("descriptor %d is not a %s", fd, name)
	}
	mem, err := mapMemFile(file, size)
	if err != nil {
		file.Close()
		return syncMem{}, 0, err
	}
	return syncMem{file, mem}, le.Uint32(head[16:]), nil
}

// Fd returns the descriptor of the object's memory file (close-on-exec),
// valid until Close: hand it to a child process, which opens the object
// from it.
func (m *syncMem) Fd() int { return int(m.file.Fd()) }

func (m *syncMem) u32(off int) *uint32 { return (*uint32)(unsafe.Pointer(&m.mem[off])) }
func (m *syncMem) u64(off int) *uint64 { return (*uint64)(unsafe.Pointer(&m.mem[off])) }

func (m *syncMem) close() error { return unmapAndClose(m.mem, m.file) }

// A table of process slots, 16 bytes each: the owner (a lockerID, 0 when
// free) and two counters whose meaning is the object's. A process claims a
// free slot with one compare-and-swap of its owner word.
type slotTable struct {
	base unsafe.Pointer
	n    int
}

const slotSize = 16

func newSlotTable(m *syncMem, off, end int) slotTable {
	return slotTable{unsafe.Pointer(&m.mem[off]), (end - off) / slotSize}
}

func (t slotTable) owner(i int) *uint64 {
	return (*uint64)(unsafe.Add(t.base, i*slotSize))
}

func (t slotTable) a(i int) *uint32 { return (*uint32)(unsafe.Add(t.base, i*slotSize+8)) }
func (t slotTable) b(i int) *uint32 { return (*uint32)(unsafe.Add(t.base, i*slotSize+12)) }

// find returns the index of a slot owned by id, or -1.
func (t slotTable) find(id uint64) int {
	for i := 0; i < t.n; i++ {
		if atomic.LoadUint64(t.owner(i)) == id {
			return i
		}
	}
	return -1
}

// claim takes a free slot for id and returns its index, or -1 if none is
// free. Its counters are zero: whoever frees a slot zeroes them first.
func (t slotTable) claim(id uint64) int {
	for i := 0; i < t.n; i++ {
		if atomic.LoadUint64(t.owner(i)) == 0 && atomic.CompareAndSwapUint64(t.owner(i), 0, id) {
			return i
		}
	}
	return -1
}

// aliveCache remembers, for one scan of a table, which owners are alive:
// reading /proc costs microseconds, and many slots may name one process.
type aliveCache map[uint64]bool

func (c aliveCache) alive(owner uint64) bool {
	id := owner &^ (lockWaiters | slotReclaiming)
	if id == lockerID() {
		return true
	}
	alive, ok := c[id]
	if !ok {
		alive = ownerAlive(id)
		c[id] = alive
	}
	return alive
}

// slotReclaiming marks the owner word of a slot that the process it names
// (alive) is clearing after the death of its previous owner.
const slotReclaiming = 1 << 31
