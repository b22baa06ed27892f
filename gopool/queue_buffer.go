package gopool

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

// SharedBuffer is a memory file mapped by this process, for exchanging
// bytes with code that maps the same file by its descriptor (the Python
// layer maps it with mmap). Items then cross between that code and the
// queue with one memory copy each way, and no allocation.
//
// The buffer has no synchronisation of its own: one user at a time.
type SharedBuffer struct {
	file *os.File

	mu     sync.RWMutex // users hold it shared; Close exclusively
	data   []byte
	closed bool
}

// NewSharedBuffer creates a buffer of size bytes.
func NewSharedBuffer(size int) (*SharedBuffer, error) {
	if size <= 0 {
		return nil, fmt.Errorf("buffer size must be positive, not %d", size)
	}
	fd, err := unix.MemfdCreate("gopool-buffer", unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	file := os.NewFile(uintptr(fd), "gopool-buffer")
	if err := file.Truncate(int64(size)); err != nil {
		file.Close()
		return nil, err
	}
	data, err := unix.Mmap(fd, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		file.Close()
		return nil, os.NewSyscallError("mmap", err)
	}
	return &SharedBuffer{file: file, data: data}, nil
}

// Fd returns the descriptor of the buffer's memory file, valid until Close.
func (b *SharedBuffer) Fd() int { return int(b.file.Fd()) }

// Len returns the size of the buffer.
func (b *SharedBuffer) Len() int { return len(b.data) }

// Acquire returns the buffer's bytes, valid until the matching Release;
// Close waits for it. It fails once the buffer is closed.
func (b *SharedBuffer) Acquire() ([]byte, error) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, errBufferClosed
	}
	return b.data, nil
}

// Release ends the use begun by a successful Acquire.
func (b *SharedBuffer) Release() { b.mu.RUnlock() }

var errBufferClosed = errors.New("buffer is closed")

// Close unmaps the buffer and closes its descriptor once no Use is in
// progress.
func (b *SharedBuffer) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil
	}
	b.closed = true
	err := unix.Munmap(b.data)
	b.data = nil
	if cerr := b.file.Close(); err == nil {
		err = cerr
	}
	return err
}
