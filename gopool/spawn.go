package gopool

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// WorkerSpec says how to start a process. The core starts it with the
// files the caller adds (a worker's channel and doorbell, a child's pipes)
// as fds 3, 4, ..., then Inherit; stdin is /dev/null, stdout and stderr are
// the parent's.
//
// With Zygote set, the process is forked by a zygote (see zygote.go) that
// runs Zygote's command and is told to run Entry in the child; otherwise,
// or if the zygote fails, Argv is executed.
type WorkerSpec struct {
	Argv   []string
	Zygote []string
	Entry  string
	Env    []string
	Dir    string
	// Init is the first message every new worker reads.
	Init []byte
	// Inherit lists files the process inherits (shared queues, locks...),
	// after the core's own. The core holds its own duplicates: the caller
	// may close its copies.
	Inherit []*os.File
	// OwnProcessGroup puts the process in a process group of its own, out
	// of reach of the terminal's Ctrl-C: for pool workers, whose parent
	// decides what an interrupt means.
	OwnProcessGroup bool
}

// ExitStatus is how a process ended: Code for a normal exit, Signal for
// death by a signal (then Code is -1).
type ExitStatus struct {
	Code   int
	Signal syscall.Signal
}

// process is one process started by the core, directly (cmd) or by a
// zygote (pidfd).
type process struct {
	pid    int
	cmd    *exec.Cmd
	pidfd  int
	exited chan struct{} // closed once the process has been reaped
	exit   ExitStatus    // valid after exited is closed

	mu    sync.Mutex // signal and ended: the pidfd is closed once it has ended
	ended bool
}

// signal sends sig unless the process has ended.
func (p *process) signal(sig syscall.Signal) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ended {
		return
	}
	if p.cmd != nil {
		_ = p.cmd.Process.Signal(sig) // it may have just exited: nothing to do then
	} else {
		_ = unix.PidfdSendSignal(p.pidfd, sig, nil, 0)
	}
}

// end records how the process ended and closes exited.
func (p *process) end(exit ExitStatus) {
	p.mu.Lock()
	p.ended = true
	p.exit = exit
	if p.cmd == nil {
		unix.Close(p.pidfd)
	}
	p.mu.Unlock()
	close(p.exited)
}

type spawnRequest struct {
	spec  WorkerSpec
	files []*os.File
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

// startProcess starts a process with files as fds 3, 4, ..., through its
// zygote if it has one (falling back to fork+exec if the zygote fails).
// exited is closed once the process has been reaped.
func startProcess(spec WorkerSpec, files []*os.File) (*process, error) {
	if len(spec.Zygote) > 0 {
		if p, err := startViaZygote(spec, files); err == nil {
			return p, nil
		}
	}
	return startDirect(spec, files)
}

// startDirect starts a process by fork+exec. Every such child is forked
// from one dedicated OS thread that is locked and never released:
// PR_SET_PDEATHSIG fires when the thread that forked the child exits, and
// Go retires idle threads at will, so forking from an arbitrary thread
// could kill the workers of a healthy parent.
func startDirect(spec WorkerSpec, files []*os.File) (*process, error) {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnRequest)
		go spawnLoop(spawner.reqs)
	})
	reply := make(chan spawnReply, 1)
	spawner.reqs <- spawnRequest{spec: spec, files: files, reply: reply}
	r := <-reply
	if r.err == nil {
		go r.proc.reap()
	}
	return r.proc, r.err
}

func spawnLoop(reqs <-chan spawnRequest) {
	runtime.LockOSThread() // never unlocked: see startProcess
	for req := range reqs {
		p, err := forkExec(req.spec, req.files)
		req.reply <- spawnReply{proc: p, err: err}
	}
}

// ErrCannotStart wraps why a process could not be started.
type ErrCannotStart struct {
	Argv0 string
	Err   error
}

func (e *ErrCannotStart) Error() string {
	return fmt.Sprintf("cannot start process %q: %v", e.Argv0, e.Err)
}

func (e *ErrCannotStart) Unwrap() error { return e.Err }

func forkExec(spec WorkerSpec, files []*os.File) (*process, error) {
	if len(spec.Argv) == 0 {
		return nil, &ErrCannotStart{Err: fmt.Errorf("empty command")}
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, &ErrCannotStart{Argv0: spec.Argv[0], Err: err}
	}
	defer devnull.Close()
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	cmd.Env = spec.Env
	cmd.Dir = spec.Dir
	cmd.Stdin = devnull
	cmd.Stdout = os.Stdout
	cmd.Stderr = os.Stderr
	cmd.ExtraFiles = append(append([]*os.File(nil), files...), spec.Inherit...)
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Pdeathsig: syscall.SIGKILL,
		Setpgid:   spec.OwnProcessGroup,
	}
	if err := cmd.Start(); err != nil {
		return nil, &ErrCannotStart{Argv0: spec.Argv[0], Err: err}
	}
	return &process{cmd: cmd, pid: cmd.Process.Pid, pidfd: -1, exited: make(chan struct{})}, nil
}

// reap waits for a direct child to end and records how it ended.
func (p *process) reap() {
	state, err := p.cmd.Process.Wait()
	switch {
	case err != nil:
		p.end(ExitStatus{Code: -1})
	case state.Sys().(syscall.WaitStatus).Signaled():
		p.end(ExitStatus{Code: -1, Signal: state.Sys().(syscall.WaitStatus).Signal()})
	default:
		p.end(ExitStatus{Code: state.ExitCode()})
	}
}
