package shm

import (
	"os"

	"golang.org/x/sys/unix"
)

// Every shared object lives in an anonymous memory file (memfd: no name in
// any file system), which other processes get only by inheriting its
// descriptor.

// newMemFile creates a memory file of size bytes (sparse: pages exist once
// written), close-on-exec.
func newMemFile(name string, size int64) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC)
	if err != nil {
		return nil, os.NewSyscallError("memfd_create", err)
	}
	file := os.NewFile(uintptr(fd), name)
	if err := file.Truncate(size); err != nil {
		file.Close()
		return nil, err
	}
	return file, nil
}

// inheritedMemFile returns this process's own duplicate of the inherited
// descriptor fd, close-on-exec: the caller keeps fd.
func inheritedMemFile(fd int, name string) (*os.File, error) {
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", err)
	}
	return os.NewFile(uintptr(dup), name), nil
}

// mapMemFile maps the first size bytes of file, shared and writable.
func mapMemFile(file *os.File, size int) ([]byte, error) {
	mem, err := unix.Mmap(int(file.Fd()), 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return nil, os.NewSyscallError("mmap", err)
	}
	return mem, nil
}

// unmapAndClose ends an object's use of its memory file.
func unmapAndClose(mem []byte, file *os.File) error {
	err := unix.Munmap(mem)
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	return err
}
