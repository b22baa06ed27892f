package pybind

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"

	"github.com/gopool/gopool/gopool"
	"github.com/gopool/gopool/gopool/shm"
)

// Error codes. Every error a function returns crosses to Python as
// "E<code>: <text>"; gopool._binding maps the code to an exception (the
// table there must name every code here: see wire_test.go).
const (
	CodeInternal        = 1  // a broken invariant: RuntimeError
	CodeReleased        = 2  // the object was released (its id is unknown)
	CodeUnknownJob      = 3  // the job is unknown (collected, discarded)
	CodeCannotStart     = 4  // a process could not be started: OSError
	CodeOS              = 5  // a system call failed: OSError
	CodeBadArgument     = 6  // ValueError
	CodeItemTooLarge    = 7  // a queue item larger than its ring
	CodeRingFull        = 8  // an unbounded queue's ring is full: MemoryError
	CodeTaskDone        = 9  // task_done() called too many times
	CodeJobSealed       = 10 // tasks added to a sealed job
	CodeLockBusy        = 11 // a lock stayed held by a live process: try again
	CodeReleasedTooMany = 12 // a lock or semaphore released too many times: ValueError
	CodeTooManyWaiters  = 13 // a condition variable has no room for another waiter
)

var errUnknownID = errors.New("unknown id: the object was released")

// badArgument is an error of the caller's arguments.
type badArgument struct{ msg string }

func (e badArgument) Error() string { return e.msg }

func errBadArgument(format string, args ...any) error {
	return badArgument{fmt.Sprintf(format, args...)}
}

// codeOf returns the code of an error.
func codeOf(err error) int {
	var cannotStart *gopool.ErrCannotStart
	var bad badArgument
	var syscallErr *os.SyscallError
	var pathErr *fs.PathError
	var errno syscall.Errno
	switch {
	case errors.Is(err, errUnknownID):
		return CodeReleased
	case errors.Is(err, gopool.ErrUnknownJob):
		return CodeUnknownJob
	case errors.Is(err, gopool.ErrJobSealed):
		return CodeJobSealed
	case errors.As(err, &cannotStart):
		return CodeCannotStart
	case errors.As(err, &bad), errors.Is(err, gopool.ErrBadWorkerCount):
		return CodeBadArgument
	case errors.Is(err, shm.ErrItemTooLarge):
		return CodeItemTooLarge
	case errors.Is(err, shm.ErrRingFull):
		return CodeRingFull
	case errors.Is(err, shm.ErrTaskDone):
		return CodeTaskDone
	case errors.Is(err, shm.ErrLockBusy):
		return CodeLockBusy
	case errors.Is(err, shm.ErrReleasedTooMany):
		return CodeReleasedTooMany
	case errors.Is(err, shm.ErrTooManyWaiters):
		return CodeTooManyWaiters
	case errors.As(err, &syscallErr), errors.As(err, &pathErr), errors.As(err, &errno):
		return CodeOS
	}
	return CodeInternal
}

// coded gives err its code for the trip to Python.
func coded(err error) error {
	if err == nil {
		return nil
	}
	//lint:ignore ST1005 "E<code>: " is the form Python parses
	return fmt.Errorf("E%d: %w", codeOf(err), err)
}

// result is how every exported function returns: (v, coded error).
func result[T any](v T, err error) (T, error) { return v, coded(err) }
