package gopool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// A zygote is a process the core starts once (by fork+exec, like any
// other) and keeps for the parent's life, that starts processes by forking
// itself: a new worker then costs a fork of a warm interpreter instead of
// an interpreter's start. The zygote never runs the Go runtime, so its
// forks are safe.
//
// The core and a zygote talk over a SOCK_SEQPACKET socket pair, the
// zygote's end being its fd 3; each message is one datagram, integers are
// little-endian:
//
//	fork    core -> zygote   u8 zygFork, u64 request, i64 process group to
//	                         join (0: a new one of its own), then records
//	                         (see shm.SplitRecords): entry, dir, then one
//	                         "NAME=value" per environment variable; and the
//	                         descriptors (SCM_RIGHTS) the child gets as 3, 4, ...
//	                         followed by its stdin, stdout and stderr.
//	forked  zygote -> core   u8 zygForked, u64 request, i64 pid; SCM_RIGHTS: a
//	                         pidfd of the child
//	failed  zygote -> core   u8 zygFailed, u64 request, the reason as text
//	exited  zygote -> core   u8 zygExited, i64 pid, i32 code, i32 signal
//
// The child sets PR_SET_PDEATHSIG on the zygote, which has it on the
// core's spawner thread: when the parent dies, the zygote dies, and so do
// its children. The zygote reaps its children and reports how each ended;
// the core signals them through their pidfds, which cannot reach another
// process once the child has been reaped. If the zygote dies, the core
// treats its children as killed (they are, by their death signal).
const (
	zygFork   = 1
	zygForked = 2
	zygFailed = 3
	zygExited = 4

	zygoteMaxMessage = 1 << 20
	zygoteReplyWait  = 10 * time.Second
)

type zygote struct {
	key  string
	self *process // the zygote itself
	sock *os.File

	mu      sync.Mutex // one request at a time
	lastID  uint64
	replies chan zygoteReply

	cmu      sync.Mutex
	children map[int]*process
	dead     bool
	served   bool // it forked a child at least once
}

type zygoteReply struct {
	id   uint64
	proc *process
	err  error
}

var zygotes struct {
	mu sync.Mutex
	m  map[string]*zygote
}

// errZygoteDead means the zygote is gone; a new one is started on the next
// request.
var errZygoteDead = errors.New("zygote: it exited")

// errZygoteUnusable means the zygote of this command died before it forked
// anything (it cannot start here): processes are started directly from then
// on, instead of starting a zygote again for each.
var errZygoteUnusable = errors.New("zygote: it ended before it started a process")

// startViaZygote starts a process for spec through its zygote, starting
// the zygote first if needed.
func startViaZygote(spec WorkerSpec, files []*os.File) (*process, error) {
	z, err := zygoteFor(spec)
	if err != nil {
		return nil, err
	}
	proc, err := z.fork(spec, files)
	if errors.Is(err, errZygoteDead) {
		if z, err = zygoteFor(spec); err == nil {
			proc, err = z.fork(spec, files)
		}
	}
	return proc, err
}

func zygoteFor(spec WorkerSpec) (*zygote, error) {
	key := strings.Join(spec.Zygote, "\x00")
	zygotes.mu.Lock()
	defer zygotes.mu.Unlock()
	if z := zygotes.m[key]; z != nil {
		dead, served := z.status()
		if !dead {
			return z, nil
		}
		if !served {
			return nil, errZygoteUnusable
		}
	}
	z, err := startZygote(key, spec)
	if err != nil {
		return nil, err
	}
	if zygotes.m == nil {
		zygotes.m = map[string]*zygote{}
	}
	zygotes.m[key] = z
	return z, nil
}

func startZygote(key string, spec WorkerSpec) (*zygote, error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socketpair", err)
	}
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, zygoteMaxMessage)
	}
	mine, theirs := os.NewFile(uintptr(fds[0]), "zygote"), os.NewFile(uintptr(fds[1]), "zygote")
	zspec := WorkerSpec{Argv: spec.Zygote, Env: spec.Env, Dir: spec.Dir, OwnProcessGroup: true}
	self, err := startDirect(zspec, []*os.File{theirs})
	theirs.Close()
	if err != nil {
		mine.Close()
		return nil, err
	}
	z := &zygote{key: key, self: self, sock: mine, replies: make(chan zygoteReply, 1), children: map[int]*process{}}
	go z.read()
	return z, nil
}

func (z *zygote) isDead() bool {
	dead, _ := z.status()
	return dead
}

func (z *zygote) status() (dead, served bool) {
	z.cmu.Lock()
	defer z.cmu.Unlock()
	return z.dead, z.served
}

// fork asks the zygote for a process.
func (z *zygote) fork(spec WorkerSpec, files []*os.File) (*process, error) {
	z.mu.Lock()
	defer z.mu.Unlock()
	if z.isDead() {
		return nil, errZygoteDead
	}
	z.lastID++
	id := z.lastID
	msg := []byte{zygFork}
	msg = binary.LittleEndian.AppendUint64(msg, id)
	pgid := 0 // a group of its own
	if !spec.OwnProcessGroup {
		pgid = unix.Getpgrp() // ours, as a child we forked would be
	}
	msg = binary.LittleEndian.AppendUint64(msg, uint64(pgid))
	msg = appendRecord(msg, spec.Entry)
	msg = appendRecord(msg, spec.Dir)
	for _, kv := range spec.Env {
		msg = appendRecord(msg, kv)
	}
	if len(msg) > zygoteMaxMessage {
		return nil, fmt.Errorf("zygote: request of %d bytes (the environment is too large)", len(msg))
	}
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	var fds []int
	for _, f := range append(append(append([]*os.File(nil), files...), spec.Inherit...), devnull, os.Stdout, os.Stderr) {
		fds = append(fds, int(f.Fd()))
	}
	if err := unix.Sendmsg(int(z.sock.Fd()), msg, unix.UnixRights(fds...), nil, 0); err != nil {
		z.kill()
		return nil, fmt.Errorf("%w: %v", errZygoteDead, err)
	}
	t := time.NewTimer(zygoteReplyWait)
	defer t.Stop()
	select {
	case r := <-z.replies:
		if errors.Is(r.err, errZygoteDead) {
			return nil, r.err
		}
		if r.id != id {
			z.kill()
			return nil, fmt.Errorf("zygote: reply %d to request %d", r.id, id)
		}
		return r.proc, r.err
	case <-t.C:
		z.kill()
		return nil, fmt.Errorf("%w: no reply in %v", errZygoteDead, zygoteReplyWait)
	}
}

func appendRecord(msg []byte, s string) []byte {
	msg = binary.LittleEndian.AppendUint64(msg, uint64(len(s)))
	return append(msg, s...)
}

// kill ends a zygote that broke the protocol; its children die with it.
func (z *zygote) kill() { z.self.signal(syscall.SIGKILL) }

// read handles the zygote's messages until its socket ends.
func (z *zygote) read() {
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(int(z.sock.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			break
		}
		if !z.handle(buf[:n], oob[:oobn]) {
			z.kill()
			break
		}
	}
	z.died()
}

// handle applies one message; it reports false if the message is corrupt.
func (z *zygote) handle(msg, oob []byte) bool {
	le := binary.LittleEndian
	var fds []int
	if len(oob) > 0 {
		if msgs, err := unix.ParseSocketControlMessage(oob); err == nil && len(msgs) > 0 {
			fds, _ = unix.ParseUnixRights(&msgs[0])
		}
	}
	switch {
	case len(msg) == 17 && msg[0] == zygForked && len(fds) == 1:
		proc := &process{pid: int(int64(le.Uint64(msg[9:]))), pidfd: fds[0], exited: make(chan struct{})}
		z.cmu.Lock()
		z.children[proc.pid] = proc
		z.served = true
		z.cmu.Unlock()
		z.replies <- zygoteReply{id: le.Uint64(msg[1:]), proc: proc}
		return true
	case len(msg) >= 9 && msg[0] == zygFailed:
		z.replies <- zygoteReply{id: le.Uint64(msg[1:]), err: fmt.Errorf("zygote: %s", msg[9:])}
		return true
	case len(msg) == 17 && msg[0] == zygExited:
		pid := int(int64(le.Uint64(msg[1:])))
		exit := ExitStatus{Code: int(int32(le.Uint32(msg[9:]))), Signal: syscall.Signal(int32(le.Uint32(msg[13:])))}
		z.cmu.Lock()
		proc := z.children[pid]
		delete(z.children, pid)
		z.cmu.Unlock()
		if proc != nil {
			proc.end(exit)
		}
		return true
	}
	for _, fd := range fds {
		unix.Close(fd)
	}
	return false
}

// died runs once the zygote's socket has ended: its children die by their
// death signal; each is marked so once its pidfd says it is gone.
func (z *zygote) died() {
	z.cmu.Lock()
	z.dead = true
	children := z.children
	z.children = nil
	z.cmu.Unlock()
	select {
	case z.replies <- zygoteReply{err: errZygoteDead}:
	default:
	}
	// Not while a request is being sent: its descriptor number could be
	// reused by then. The request in flight, if any, has its answer above.
	z.mu.Lock()
	z.sock.Close()
	z.mu.Unlock()
	<-z.self.exited
	for _, proc := range children {
		go func(proc *process) {
			fds := []unix.PollFd{{Fd: int32(proc.pidfd), Events: unix.POLLIN}}
			for {
				if _, err := unix.Poll(fds, -1); err != unix.EINTR {
					break
				}
			}
			proc.end(ExitStatus{Code: -1, Signal: syscall.SIGKILL})
		}(proc)
	}
}
