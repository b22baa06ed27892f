package gopool

import (
	"errors"
	"os"
	"syscall"
	"time"
)

// Child is a process started for one job of its own (Python's
// multiprocessing.Process): it gets one init frame on fd 3 and runs until
// it exits. The core keeps the parent's end of fd 3 open for the child's
// whole life, so the child can watch it to learn of its parent's death, and
// the child's fd 4 open in the child only, so that the parent's end of it
// (the sentinel) becomes readable when the child dies.
type Child struct {
	proc *process
}

// StillRunning is what Child.Wait returns for a child that has not exited.
const StillRunning = -1 << 32

// StartChild starts a child and sends it spec.Init.
func StartChild(spec WorkerSpec) (*Child, error) {
	proc, err := startProcess(spec)
	if err != nil {
		return nil, err
	}
	proc.keepOutput = true // it is the sentinel, which Python may be waiting on
	go proc.reap()
	c := &Child{proc: proc}
	if err := writeFrame(proc.input, kindInit, 0, spec.Init); err != nil {
		_ = c.Signal(syscall.SIGKILL)
		c.Release()
		return nil, err
	}
	return c, nil
}

// Pid returns the child's process id.
func (c *Child) Pid() int { return c.proc.pid }

// Sentinel returns a descriptor of this process that becomes readable
// (end-of-file) when the child has exited. It stays valid until Release.
func (c *Child) Sentinel() int {
	return int(c.proc.outRaw.Fd())
}

// Wait waits up to timeout for the child to exit and returns its exit code
// in Python's convention, or StillRunning.
func (c *Child) Wait(timeout time.Duration) int {
	if timeout <= 0 {
		select {
		case <-c.proc.exited:
			return c.proc.exit.ExitCode()
		default:
			return StillRunning
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-c.proc.exited:
		return c.proc.exit.ExitCode()
	case <-t.C:
		return StillRunning
	}
}

// Signal sends sig to the child unless it has exited.
func (c *Child) Signal(sig syscall.Signal) error {
	select {
	case <-c.proc.exited:
		return nil
	default:
	}
	err := c.proc.cmd.Process.Signal(sig)
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}

// Release closes the core's ends of the child's streams. The child, if
// still running, sees its parent's end of fd 3 close.
func (c *Child) Release() {
	c.proc.closeInput()
	c.proc.closeOutput()
}
