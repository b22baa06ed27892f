package pybind

import (
	"encoding/binary"
	"os"
	"syscall"

	"github.com/gopool/gopool/gopool"
	"github.com/gopool/gopool/gopool/shm"
)

var children = newRegistry[*gopool.Child]()

// ChildStillRunning is what ChildWait returns for a child that has not
// exited: no exit code or minus a signal number can be this.
const ChildStillRunning = -1 << 32

// inheritFiles duplicates the descriptors listed in fds (8-byte
// little-endian numbers) so that the core owns copies for as long as it
// needs them. The copies are close-on-exec: only the children they are
// handed to receive them.
func inheritFiles(fds []byte) ([]*os.File, error) {
	if len(fds)%8 != 0 {
		return nil, errBadArgument("descriptor list is not a multiple of 8 bytes")
	}
	files := make([]*os.File, 0, len(fds)/8)
	for i := 0; i < len(fds); i += 8 {
		fd := binary.LittleEndian.Uint64(fds[i:])
		dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			closeFiles(files)
			return nil, os.NewSyscallError("fcntl(F_DUPFD_CLOEXEC)", errno)
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

// stringRecords splits records into strings: lists of strings cross as
// records because a C string cannot hold the NUL that would separate them.
func stringRecords(blob []byte) ([]string, error) {
	records, err := shm.SplitRecords(blob)
	if err != nil {
		return nil, errBadArgument("string records: %v", err)
	}
	out := make([]string, len(records))
	for i, r := range records {
		out[i] = string(r)
	}
	return out, nil
}

// processSpec decodes how to start a process: argv to execute it, or
// zygote (records; none for no zygote) to fork it from a zygote that runs
// entry. gopy's []byte arguments are the caller's only for the call: init
// is copied.
func processSpec(argv, zygote []byte, entry string, env []byte, dir string, init, fds []byte) (gopool.WorkerSpec, error) {
	args, err := stringRecords(argv)
	if err != nil {
		return gopool.WorkerSpec{}, err
	}
	zargs, err := stringRecords(zygote)
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
	return gopool.WorkerSpec{Argv: args, Zygote: zargs, Entry: entry, Env: vars, Dir: dir,
		Init: append([]byte(nil), init...), Inherit: files}, nil
}

// ChildStart starts a child process (see gopool.Child): argv, zygote and
// env are records (see processSpec), fds descriptors it inherits after the
// core's own.
func ChildStart(argv, zygote []byte, entry string, env []byte, dir string, init, fds []byte) (int64, error) {
	spec, err := processSpec(argv, zygote, entry, env, dir, init, fds)
	if err != nil {
		return result(int64(0), err)
	}
	c, err := gopool.StartChild(spec)
	closeFiles(spec.Inherit) // the child has its copies
	if err != nil {
		return result(int64(0), err)
	}
	return children.add(c), nil
}

// ChildPid returns a child's process id.
func ChildPid(child int64) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(c.Pid()), nil
}

// ChildSentinel returns a descriptor that becomes readable when the child
// exits; valid until ChildRelease.
func ChildSentinel(child int64) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return result(int64(0), err)
	}
	return int64(c.Sentinel()), nil
}

// ChildWait waits up to timeoutMs for the child to exit; it returns its
// exit code, or minus the signal that killed it, or ChildStillRunning.
func ChildWait(child int64, timeoutMs int) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return result(int64(0), err)
	}
	exit, ok := c.Wait(millis(timeoutMs))
	switch {
	case !ok:
		return ChildStillRunning, nil
	case exit.Signal != 0:
		return -int64(exit.Signal), nil
	default:
		return int64(exit.Code), nil
	}
}

// ChildSignal sends a signal to a child that has not exited.
func ChildSignal(child int64, sig int) (int64, error) {
	c, err := children.get(child)
	if err != nil {
		return result(int64(0), err)
	}
	return result(int64(0), c.Signal(syscall.Signal(sig)))
}

// ChildRelease forgets a child and closes the core's ends of its pipes.
func ChildRelease(child int64) (int64, error) {
	c, err := children.take(child)
	if err != nil {
		return result(int64(0), err)
	}
	c.Release()
	return 0, nil
}
