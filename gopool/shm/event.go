package shm

import (
	"os"
	"sync/atomic"
	"time"
	"unsafe"
)

// Event is a flag shared by the processes of one tree, in an anonymous
// memory file (memfd). Its one 32-bit word holds the flag in bit 31 and a
// generation in the low bits that every Set bumps, so that a waiter asleep
// on an older value wakes up. Nothing counts sleepers: a waiter that dies
// leaves nothing behind, and Set never waits for anyone (the stdlib's Event
// can hang in set() when a waiter was killed).
type Event struct {
	file *os.File
	mem  []byte
	word *uint32
}

const eventSetBit = 1 << 31

// NewEvent creates an event, clear.
func NewEvent() (*Event, error) {
	file, err := newMemFile("gopool-event", int64(os.Getpagesize()))
	if err != nil {
		return nil, err
	}
	return mapEvent(file)
}

// OpenEvent maps an event from a descriptor of its memory file (one this
// process inherited). It uses its own duplicate: the caller keeps fd.
func OpenEvent(fd int) (*Event, error) {
	file, err := inheritedMemFile(fd, "gopool-event")
	if err != nil {
		return nil, err
	}
	return mapEvent(file)
}

func mapEvent(file *os.File) (*Event, error) {
	mem, err := mapMemFile(file, os.Getpagesize())
	if err != nil {
		file.Close()
		return nil, err
	}
	return &Event{file: file, mem: mem, word: (*uint32)(unsafe.Pointer(&mem[0]))}, nil
}

// Fd returns the descriptor of the event's memory file.
func (e *Event) Fd() int { return int(e.file.Fd()) }

// IsSet reports whether the flag is set.
func (e *Event) IsSet() bool { return atomic.LoadUint32(e.word)&eventSetBit != 0 }

// Set sets the flag and wakes every waiter.
func (e *Event) Set() {
	for {
		old := atomic.LoadUint32(e.word)
		next := eventSetBit | ((old + 1) &^ eventSetBit)
		if atomic.CompareAndSwapUint32(e.word, old, next) {
			break
		}
	}
	futexWake(e.word, 1<<30)
}

// Clear clears the flag.
func (e *Event) Clear() {
	for {
		old := atomic.LoadUint32(e.word)
		if atomic.CompareAndSwapUint32(e.word, old, old&^eventSetBit) {
			return
		}
	}
}

// Wait waits up to timeout for the flag to be set and reports whether it is.
func (e *Event) Wait(timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for {
		v := atomic.LoadUint32(e.word)
		if v&eventSetBit != 0 {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		futexWait(e.word, v, left)
	}
}

// Close unmaps the event from this process and closes its descriptor.
func (e *Event) Close() error { return unmapAndClose(e.mem, e.file) }
