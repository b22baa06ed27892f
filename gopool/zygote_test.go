package gopool

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/gopool/gopool/gopool/shm"
	"golang.org/x/sys/unix"
)

// With the argument "zygote", the test binary plays a zygote. It cannot
// fork (the Go runtime does not survive a fork), so it starts each child by
// fork+exec of itself with the environment of the request: the protocol is
// the same.
func testZygote() int {
	const sock = 3
	exe, err := os.Executable()
	if err != nil {
		return 20
	}
	go reapForZygote(sock)
	buf := make([]byte, zygoteMaxMessage)
	oob := make([]byte, unix.CmsgSpace(64*4))
	for {
		n, oobn, _, _, err := unix.Recvmsg(sock, buf, oob, 0)
		if err == unix.EINTR {
			continue
		}
		if err != nil || n == 0 {
			return 0 // the core is gone
		}
		msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
		fds, _ := unix.ParseUnixRights(&msgs[0])
		id := binary.LittleEndian.Uint64(buf[1:])
		pgid := int(int64(binary.LittleEndian.Uint64(buf[9:])))
		records, _ := shm.SplitRecords(buf[17:n])
		dir, env := string(records[1]), make([]string, 0, len(records))
		for _, r := range records[2:] {
			env = append(env, string(r))
		}
		k := len(fds)
		files := append([]uintptr{uintptr(fds[k-3]), uintptr(fds[k-2]), uintptr(fds[k-1])}, toUintptrs(fds[:k-3])...)
		pid, err := syscall.ForkExec(exe, []string{exe}, &syscall.ProcAttr{Dir: dir, Env: env, Files: files,
			Sys: &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setpgid: true, Pgid: pgid}})
		for _, fd := range fds {
			unix.Close(fd)
		}
		reply := binary.LittleEndian.AppendUint64([]byte{zygForked}, id)
		if err != nil {
			reply = append(binary.LittleEndian.AppendUint64([]byte{zygFailed}, id), err.Error()...)
			_ = unix.Sendmsg(sock, reply, nil, nil, 0)
			continue
		}
		pidfd, _ := unix.PidfdOpen(pid, 0)
		reply = binary.LittleEndian.AppendUint64(reply, uint64(pid))
		_ = unix.Sendmsg(sock, reply, unix.UnixRights(pidfd), nil, 0)
		unix.Close(pidfd)
	}
}

func toUintptrs(fds []int) []uintptr {
	out := make([]uintptr, len(fds))
	for i, fd := range fds {
		out[i] = uintptr(fd)
	}
	return out
}

func reapForZygote(sock int) {
	for {
		var ws unix.WaitStatus
		pid, err := unix.Wait4(-1, &ws, 0, nil)
		if err != nil {
			time.Sleep(5 * time.Millisecond) // no child yet
			continue
		}
		code, sig := ws.ExitStatus(), 0
		if ws.Signaled() {
			code, sig = -1, int(ws.Signal())
		}
		msg := binary.LittleEndian.AppendUint64([]byte{zygExited}, uint64(pid))
		msg = binary.LittleEndian.AppendUint32(msg, uint32(int32(code)))
		msg = binary.LittleEndian.AppendUint32(msg, uint32(int32(sig)))
		_ = unix.Sendmsg(sock, msg, nil, nil, 0)
	}
}

func newZygotePool(t *testing.T, workers int) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return newTestPoolWith(t, Options{Workers: workers, Spec: WorkerSpec{Zygote: []string{exe, "zygote"}, Entry: "worker"}})
}

func zygoteOf(t *testing.T, p *Pool) *zygote {
	t.Helper()
	zygotes.mu.Lock()
	defer zygotes.mu.Unlock()
	z := zygotes.m[p.opts.Spec.Zygote[0]+"\x00zygote"]
	if z == nil {
		t.Fatal("no zygote")
	}
	return z
}

// Workers forked by the zygote run tasks; one that dies is reported with
// its real exit status and replaced; terminate reaches them.
func TestZygoteStartsAndReplacesWorkers(t *testing.T) {
	p := newZygotePool(t, 2)
	z := zygoteOf(t, p)
	got := collectAll(t, p, submit(t, p, "echo:a", "pid", "pid"))
	if string(got[0].Payload) != "a" {
		t.Fatalf("echo: %q", got[0].Payload)
	}
	for _, w := range p.Workers() {
		if w.Pid == z.self.pid {
			t.Fatal("the zygote runs tasks")
		}
	}
	r := collectAll(t, p, submit(t, p, "exit:7"))[0]
	if r.Status != StatusWorkerLost || r.Exit.Code != 7 {
		t.Fatalf("exit:7 gave %v %+v", r.Status, r.Exit)
	}
	r = collectAll(t, p, submit(t, p, "kill"))[0]
	if r.Status != StatusWorkerLost || r.Exit.Signal != syscall.SIGKILL {
		t.Fatalf("kill gave %v %+v", r.Status, r.Exit)
	}
	if r := collectAll(t, p, submit(t, p, "echo:healed"))[0]; string(r.Payload) != "healed" {
		t.Fatalf("after deaths: %v %q", r.Status, r.Payload)
	}
	j := submit(t, p, "sleep:10000", "sleep:10000")
	for p.Queued() > 0 {
		time.Sleep(time.Millisecond)
	}
	p.Terminate()
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("terminate did not reach workers forked by the zygote")
	}
	collectAll(t, p, j)
}

// When the zygote dies, its children die with it; the pool sees their
// deaths, a new zygote starts, and the pool heals.
func TestZygoteDeathIsSurvived(t *testing.T) {
	p := newZygotePool(t, 1)
	collectAll(t, p, submit(t, p, "echo:warm"))
	z := zygoteOf(t, p)
	j := submit(t, p, "sleep:10000")
	waitRunning(t, p)
	z.self.signal(syscall.SIGKILL)
	if r := collectAll(t, p, j)[0]; r.Status != StatusWorkerLost {
		t.Fatalf("the running task: %v", r.Status)
	}
	if r := collectAll(t, p, submit(t, p, "pid"))[0]; r.Status != StatusOK {
		t.Fatalf("after the zygote died: %v", r.Status)
	}
	if z2 := zygoteOf(t, p); z2 == z {
		t.Fatal("no new zygote")
	}
}

// waitRunning waits until every worker of p runs a task.
func waitRunning(t *testing.T, p *Pool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		p.mu.Lock()
		running := 0
		for w := range p.workers {
			if w.ch.Running() != 0 {
				running++
			}
		}
		all := running == len(p.workers)
		p.mu.Unlock()
		if all {
			return
		}
	}
	t.Fatal("the workers did not begin their tasks")
}

// A process whose zygote cannot start is started directly.
func TestBrokenZygoteFallsBackToExec(t *testing.T) {
	p := newTestPoolWith(t, Options{Workers: 1, Spec: WorkerSpec{Zygote: []string{"/nonexistent/zygote"}, Entry: "worker"}})
	if r := collectAll(t, p, submit(t, p, "echo:direct"))[0]; string(r.Payload) != "direct" {
		t.Fatalf("got %v %q", r.Status, r.Payload)
	}
}

// A zygote that ends before it starts anything is started once, not again
// for every process: the rest start directly.
func TestZygoteThatCannotStartIsNotRetriedForEveryProcess(t *testing.T) {
	starts := filepath.Join(t.TempDir(), "starts")
	zygote := []string{"/bin/sh", "-c", "echo x >> " + starts}
	p := newTestPoolWith(t, Options{Workers: 3, Spec: WorkerSpec{Zygote: zygote, Entry: "worker"}})
	if r := collectAll(t, p, submit(t, p, "echo:direct"))[0]; string(r.Payload) != "direct" {
		t.Fatalf("got %v %q", r.Status, r.Payload)
	}
	for i := 0; i < 3; i++ {
		if r := collectAll(t, p, submit(t, p, "kill"))[0]; r.Status != StatusWorkerLost {
			t.Fatalf("kill: %v", r.Status)
		}
	}
	collectAll(t, p, submit(t, p, "echo:again"))
	if got, _ := os.ReadFile(starts); string(got) != "x\n" {
		t.Fatalf("the zygote was started %d times", len(got)/2)
	}
}
