package pybind

import (
	"encoding/binary"
	"errors"
	"os"
	"syscall"

	"github.com/gopool/gopool/gopool"
)

var children = registry[*gopool.Child]{items: map[int64]*gopool.Child{}}

// inheritFiles duplicates the descriptors listed in fds (8-byte
// little-endian numbers) so that the core owns copies for as long as it
// needs them. The copies are close-on-exec: only the children they are
// handed to receive them.
func inheritFiles(fds []byte) ([]*os.File, error) {
	if len(fds)%8 != 0 {
		return nil, errors.New("gopool: descriptor list is not a multiple of 8 bytes")
	}
	files := make([]*os.File, 0, len(fds)/8)
	for i := 0; i < len(fds); i += 8 {
		fd := binary.LittleEndian.Uint64(fds[i:])
		dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			closeFiles(files)
			return nil, &os.SyscallError{Syscall: "fcntl(F_DUPFD_CLOEXEC)", Err: errno}
		}
		files = append(files, os.NewFile(dup, "inherited"))
	}
	return files, nil
}

func closeFiles(files []*os.File) {
	for _, f := range files {
		f.Close()
	}
}

func workerSpec(argv, env []byte, dir string, init, fds []byte) (gopool.WorkerSpec, error) {
	args, err := stringRecords(argv)
	if err != nil {
		return gopool.WorkerSpec{}, err
	}
	vars, err := stringRecords(env)
	if err != nil {
		return gopool.WorkerSpec{}, err
	}
	files, err := inheritFiles(fds)
	if err != nil {
		return gopool.WorkerSpec{}, err
	}
	return gopool.WorkerSpec{Argv: args, Env: vars, Dir: dir, Init: append([]byte(nil), init...), Inherit: files}, nil
}

// ChildStart starts a child process (see gopool.Child): argv and env are
// blobs of records, fds a list of descriptors it inherits as 5, 6, ...
func ChildStart(argv, env []byte, dir string, init, fds []byte) (int64, error) {
	spec, err := workerSpec(argv, env, dir, init, fds)
	if err != nil {
		return 0, err
	}
	c, err := gopool.StartChild(spec)
	closeFiles(spec.Inherit) // the child has its copies
	if err != nil {
		return 0, err
	}
	return children.add(c), nil
}

// ChildPid returns a child's process id.
func ChildPid(child int64) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return 0, err
	}
	return int64(c.Pid()), nil
}

// ChildSentinel returns a descriptor that becomes readable when the child
// exits; valid until ChildRelease.
func ChildSentinel(child int64) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return 0, err
	}
	return int64(c.Sentinel()), nil
}

// ChildWait waits up to timeoutMs for the child to exit; it returns the
// exit code (minus the signal number after a signal) or gopool.StillRunning.
func ChildWait(child int64, timeoutMs int) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return 0, err
	}
	return int64(c.Wait(millis(timeoutMs))), nil
}

// ChildSignal sends a signal to a child that has not exited.
func ChildSignal(child int64, sig int) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return 0, err
	}
	return 0, c.Signal(syscall.Signal(sig))
}

// ChildRelease forgets a child and closes the core's ends of its streams.
func ChildRelease(child int64) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return 0, err
	}
	c.Release()
	children.remove(child)
	return 0, nil
}
