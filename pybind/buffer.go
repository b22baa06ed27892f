package pybind

import (
	"errors"
	"fmt"
	"os"
	"sync"

	"golang.org/x/sys/unix"
)

var buffers = newRegistry[*sharedBuffer]()

// sharedBuffer is a memory file mapped by this process, for exchanging
// bytes with code that maps the same file by its descriptor (the Python
// layer maps it with mmap). Items then cross between that code and the
// queue with one memory copy each way, and no allocation.
//
// The buffer has no synchronisation of its own: one user at a time.
type sharedBuffer struct {
	file *os.File

	mu     sync.RWMutex // users hold it shared; Close exclusively
	data   []byte
	closed bool
}

// newSharedBuffer creates a buffer of size bytes.
func newSharedBuffer(size int) (*sharedBuffer, error) {
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
	return &sharedBuffer{file: file, data: data}, nil
}

// Fd returns the descriptor of the buffer's memory file, valid until Close.
func (b *sharedBuffer) Fd() int { return int(b.file.Fd()) }

// Len returns the size of the buffer.

// Acquire returns the buffer's bytes, valid until the matching Release;
// Close waits for it. It fails once the buffer is closed.
func (b *sharedBuffer) Acquire() ([]byte, error) {
	b.mu.RLock()
	if b.closed {
		b.mu.RUnlock()
		return nil, errBufferClosed
	}
	return b.data, nil
}

// Release ends the use begun by a successful Acquire.
func (b *sharedBuffer) Release() { b.mu.RUnlock() }

var errBufferClosed = errors.New("buffer is closed")

// Close unmaps the buffer and closes its descriptor once no Use is in
// progress.
func (b *sharedBuffer) Close() error {
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

// withBuffer runs f on the bytes of a buffer.
func withBuffer(buffer int64, f func(data []byte) (int64, error)) (int64, error) {
	b, err := buffers.get(buffer)
	if err != nil {
		return result(int64(0), err)
	}
	data, err := b.Acquire()
	if err != nil {
		return result(int64(0), err)
	}
	defer b.Release()
	return f(data)
}

// BufferNew creates a shared buffer of size bytes.
func BufferNew(size int64) (int64, error) {
	b, err := newSharedBuffer(int(size))
	if err != nil {
		return result(int64(0), err)
	}
	return buffers.add(b), nil
}

// BufferFd returns the descriptor of a buffer's memory file, for mmap.
func BufferFd(buffer int64) (int64, error) {
	b, err := buffers.get(buffer)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(b.Fd()), nil
}

// BufferRelease unmaps a buffer and forgets its id.
func BufferRelease(buffer int64) (int64, error) {
	b, err := buffers.take(buffer)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), b.Close())
}
