package gopool

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
)

// orphanedStreamGrace is how long after a worker's death its result stream
// stays open for the reader to drain.
const orphanedStreamGrace = time.Second

// WorkerSpec says how to start one worker process. The core execs Argv[0]
// with the worker's end of the task stream on fd 3 and of the result stream
// on fd 4, then Inherit as fds 5, 6, ...; stdin is /dev/null, stdout and
// stderr are the parent's.
type WorkerSpec struct {
	Argv []string
	Env  []string
	Dir  string
	// Init is sent to every new worker as its first frame.
	Init []byte
	// Inherit lists files the worker inherits (shared queues, locks...).
	// The core holds its own duplicates: the caller may close its copies.
	Inherit []*os.File
	// OwnProcessGroup puts the process in a process group of its own, out
	// of reach of the terminal's Ctrl-C: for pool workers, whose parent
	// decides what an interrupt means.
	OwnProcessGroup bool
}

// FirstInheritedFd is the descriptor number of Inherit[0] in a worker.
const FirstInheritedFd = 5

// ExitInfo describes how a process ended: Code for a normal exit, Signal
// for death by a signal (then Code is -1).
type ExitInfo struct {
	Code   int
	Signal syscall.Signal
}

// ExitCode returns the exit status in Python's convention: the code, or
// minus the signal number.
func (e ExitInfo) ExitCode() int {
	if e.Signal != 0 {
		return -int(e.Signal)
	}
	return e.Code
}

// process is one running worker and the core's ends of its two streams.
type process struct {
	cmd    *exec.Cmd
	pid    int
	input  *os.File      // core -> worker
	output *bufio.Reader // worker -> core
	outRaw *os.File

	keepOutput      bool // the output stream outlives the process (a Child's sentinel)
	closeInputOnce  sync.Once
	closeOutputOnce sync.Once
	exited          chan struct{} // closed once the process has been reaped
	exit            ExitInfo      // valid after exited is closed
}

// closeInput tells the worker there is no more work: it reads end-of-stream
// and exits on its own.
func (p *process) closeInput() {
	p.closeInputOnce.Do(func() { p.input.Close() })
}

// closeOutput releases the core's end of the result stream.
func (p *process) closeOutput() {
	p.closeOutputOnce.Do(func() { p.outRaw.Close() })
}

func (p *process) signal(sig syscall.Signal) {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Signal(sig) // it may have just exited: nothing to do then
	}
}

type spawnRequest struct {
	spec  WorkerSpec
	reply chan spawnReply
}

type spawnReply struct {
	proc *process
	err  error
}

var spawner struct {
	once sync.Once
	reqs chan spawnRequest
}

// startProcess starts a worker. Every child is forked from one dedicated OS
// thread that is locked and never released: PR_SET_PDEATHSIG fires when the
// thread that forked the child exits, and Go retires idle threads at will, so
// forking from an arbitrary thread could kill workers of a healthy parent.
func startProcess(spec WorkerSpec) (*process, error) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go spawnLoop(spawner.reqs)
	})
	reply := make(chan spawnReply, 1)
	spawner.reqs <- spawnRequest{spec: spec, reply: reply}
	r := <-reply
	return r.proc, r.err
}

func spawnLoop(reqs <-chan spawnRequest) {
	runtime.LockOSThread() // never unlocked: see startProcess
	for req := range reqs {
		p, err := forkExec(req.spec)
		req.reply <- spawnReply{proc: p, err: err}
	}
}

func forkExec(spec WorkerSpec) (*process, error) {
	if len(spec.Argv) == 0 {
		return nil, fmt.Errorf("worker command is empty")
	}
	taskR, taskW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	resR, resW, err := os.Pipe()
	if err != nil {
		taskR.Close()
		taskW.Close()
		return nil, err
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		closeAll(taskR, taskW, resR, resW)
		return nil, err
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdin = devnull
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = append([]*os.File{taskR, resW}, spec.Inherit...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   spec.OwnProcessGroup,
	}
	err = cmd.Start()
	closeAll(taskR, resW, devnull) // the child has its copies now
	if err != nil {
		closeAll(taskW, resR)
		return nil, fmt.Errorf("cannot start worker %q: %w", spec.Argv[0], err)
	}
	p := &process{
		cmd:    cmd,
		pid:    cmd.Process.Pid,
		input:  taskW,
		output: bufio.NewReaderSize(resR, 64<<10),
		outRaw: resR,
		exited: make(chan struct{}),
	}
	return p, nil
}

// reap waits for the process to end and records how it ended.
func (p *process) reap() {
	state, err := p.cmd.Process.Wait()
	if err == nil {
		if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			p.exit = ExitInfo{Code: -1, Signal: ws.Signal()}
		} else {
			p.exit = ExitInfo{Code: state.ExitCode()}
		}
	} else {
		p.exit = ExitInfo{Code: -1}
	}
	p.closeInput()
	close(p.exited)
	// A result written just before death is still in the pipe and the reader
	// must get it, so the stream is not closed now. But a grandchild that
	// inherited the worker's end would keep it open forever: give the reader
	// a moment to drain, then force end-of-stream.
	if !p.keepOutput {
		time.AfterFunc(orphanedStreamGrace, p.closeOutput)
	}
}

func closeAll(files ...*os.File) {
	for _, f := range files {
		f.Close()
	}
}
