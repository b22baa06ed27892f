package gopool

import (
	"encoding/binary"
	"errors"
	"os"
	"sync"
	"syscall"
	"time"
)

// Child is a process started for a job of its own, that runs until it
// exits. Its fd 3 is a pipe from the core that carries one init message
// ([8-byte little-endian length][payload]) and then stays open for the
// child's whole life, so the child can watch it to learn of its parent's
// death. Its fd 4 is the write end of a pipe whose read end the core keeps:
// the sentinel, which becomes readable when the child has exited (and every
// process that inherited fd 4 from it).
type Child struct {
	proc      *process
	init      *os.File // the core's end of fd 3
	sentinel  *os.File
	closeOnce sync.Once
}

// StartChild starts a child and sends it spec.Init.
func StartChild(spec WorkerSpec) (*Child, error) {
	initR, initW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	sentR, sentW, err := os.Pipe()
	if err != nil {
		closeAll(initR, initW)
		return nil, err
	}
	proc, err := startProcess(spec, []*os.File{initR, sentW})
	closeAll(initR, sentW) // the child has its copies
	if err != nil {
		closeAll(initW, sentR)
		return nil, err
	}
	c := &Child{proc: proc, init: initW, sentinel: sentR}
	if err := writeInit(initW, spec.Init); err != nil && !errors.Is(err, syscall.EPIPE) {
		c.proc.signal(syscall.SIGKILL)
		c.Release()
		return nil, err
	}
	return c, nil
}

// writeInit writes the init message. A child that dies before reading it
// makes it fail with EPIPE; its exit code then says what happened.
func writeInit(f *os.File, payload []byte) error {
	msg := binary.LittleEndian.AppendUint64(make([]byte, 0, 8+len(payload)), uint64(len(payload)))
	_, err := f.Write(append(msg, payload...))
	return err
}

// Pid returns the child's process id.
func (c *Child) Pid() int { return c.proc.pid }

// Sentinel returns a descriptor that becomes readable (end-of-file) when
// the child has exited. It stays valid until Release.
func (c *Child) Sentinel() int { return int(c.sentinel.Fd()) }

// Wait waits up to timeout for the child to exit. It reports whether it
// has, and how it ended.
func (c *Child) Wait(timeout time.Duration) (ExitStatus, bool) {
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		select {
		case <-c.proc.exited:
		case <-t.C:
		}
	}
	select {
	case <-c.proc.exited:
		return c.proc.exit, true
	default:
		return ExitStatus{}, false
	}
}

// Signal sends sig to the child unless it has exited.
func (c *Child) Signal(sig syscall.Signal) error {
	c.proc.signal(sig)
	return nil
}

// Release closes the core's ends of the child's pipes. The child, if
// still running, sees its parent's end of fd 3 close.
func (c *Child) Release() {
	c.closeOnce.Do(func() { closeAll(c.init, c.sentinel) })
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}
