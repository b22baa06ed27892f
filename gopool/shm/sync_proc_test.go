package shm

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
	"unsafe"
)

// The test binary doubles as a user of the synchronisation objects: with
// GOPOOL_SYNC_TEST_ROLE set, it maps the object inherited as fd 3 (and a
// second one as fd 4) and plays the role (init runs before TestMain):
//
//	mutex-count:N     N times: take the mutex, add 1 to the counter in fd 4
//	                  (a plain load and store), release; exit
//	mutex-hold        take the mutex, print "held", die by SIGKILL
//	sem-hold:N        take N permits, print "held", die by SIGKILL
//	sem-take-close    take a permit, close the semaphore, exit normally
//	cond-wait         with the mutex of fd 4: enlist, print "waiting", wait
//	                  to be notified, print "notified", exit
//	cond-wait-die     enlist, print "waiting", die by SIGKILL
//	barrier-rounds:N  wait at the barrier N times (index 0 runs no action)
//	barrier-inside    enter the barrier, print "inside", die by SIGKILL
//	barrier-party     map the barrier, print "ready", sleep until killed
func init() {
	role := os.Getenv("GOPOOL_SYNC_TEST_ROLE")
	if role == "" {
		return
	}
	os.Exit(syncClient(role))
}

func syncClient(role string) int {
	args := strings.Split(role, ":")
	n := 0
	if len(args) > 1 {
		n, _ = strconv.Atoi(args[1])
	}
	say := func(s string) { fmt.Println(s) }
	die := func() int {
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
		return 9
	}
	fail := func(err error) int {
		if err == nil {
			return 0
		}
		fmt.Fprintln(os.Stderr, role+":", err)
		return 3
	}
	switch args[0] {
	case "mutex-count", "mutex-hold":
		m, err := OpenMutex(3)
		if err != nil {
			return fail(err)
		}
		if args[0] == "mutex-hold" {
			if ok, _ := m.Acquire(10 * time.Second); !ok {
				return fail(fmt.Errorf("no lock"))
			}
			say("held")
			return die()
		}
		mem, err := mapMemFile(os.NewFile(4, "counter"), 4096)
		if err != nil {
			return fail(err)
		}
		counter := (*uint64)(unsafe.Pointer(&mem[0]))
		for i := 0; i < n; i++ {
			if ok, _ := m.Acquire(10 * time.Second); !ok {
				return fail(fmt.Errorf("no lock"))
			}
			v := atomic.LoadUint64(counter)
			atomic.StoreUint64(counter, v+1)
			if err := m.Release(); err != nil {
				return fail(err)
			}
		}
	case "sem-hold", "sem-take-close":
		s, err := OpenSemaphore(3)
		if err != nil {
			return fail(err)
		}
		if args[0] == "sem-take-close" {
			n = 1
		}
		for i := 0; i < n; i++ {
			if !s.Acquire(10 * time.Second) {
				return fail(fmt.Errorf("no permit"))
			}
		}
		if args[0] == "sem-take-close" {
			return fail(s.Close())
		}
		say("held")
		return die()
	case "cond-wait", "cond-wait-die":
		c, err := OpenCond(3)
		if err != nil {
			return fail(err)
		}
		m, err := OpenMutex(4)
		if err != nil {
			return fail(err)
		}
		if ok, _ := m.Acquire(10 * time.Second); !ok {
			return fail(fmt.Errorf("no lock"))
		}
		slot, err := c.Enlist()
		if err != nil {
			return fail(err)
		}
		if err := m.Release(); err != nil {
			return fail(err)
		}
		say("waiting")
		if args[0] == "cond-wait-die" {
			return die()
		}
		if !c.Sleep(slot, 20*time.Second) || !c.Leave(slot) {
			return fail(fmt.Errorf("not notified"))
		}
		say("notified")
	case "barrier-rounds", "barrier-inside", "barrier-party":
		b, err := OpenBarrier(3)
		if err != nil {
			return fail(err)
		}
		switch args[0] {
		case "barrier-rounds":
			for i := 0; i < n; i++ {
				if _, err := barrierWait(b, 20*time.Second, nil); err != nil {
					return fail(err)
				}
			}
			return fail(b.Close())
		case "barrier-inside":
			if _, err := b.Enter(10 * time.Second); err != nil {
				return fail(err)
			}
			say("inside")
			return die()
		default:
			say("ready")
			time.Sleep(time.Hour)
		}
	default:
		return 5
	}
	return 0
}

// helper is a process of the test binary in a sync role.
type helper struct {
	cmd *exec.Cmd
	out *bufio.Reader
}

func startHelper(t *testing.T, role string, files ...*os.File) *helper {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "GOPOOL_SYNC_TEST_ROLE="+role)
	cmd.ExtraFiles = files
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd, bufio.NewReader(stdout)}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return h
}

// expect reads the helper's next line and fails unless it is want.
func (h *helper) expect(t *testing.T, want string) {
	t.Helper()
	line, err := h.out.ReadString('\n')
	if strings.TrimSpace(line) != want {
		t.Fatalf("helper said %q (%v), want %q", line, err, want)
	}
}

// exit waits for the helper to exit and returns its wait error; the
// process is reaped (not even a zombie) afterwards.
func (h *helper) exit() error {
	_, _ = h.out.ReadString(0) // to the end of its output
	return h.cmd.Wait()
}

func killedBySIGKILL(err error) bool {
	ee, ok := err.(*exec.ExitError)
	if !ok {
		return false
	}
	ws, ok := ee.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL
}

func TestMutexExcludesAcrossProcesses(t *testing.T) {
	m := newTestMutex(t)
	counterFile, err := newMemFile("counter", 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer counterFile.Close()
	const procs, each = 3, 3000
	var hs []*helper
	for p := 0; p < procs; p++ {
		hs = append(hs, startHelper(t, fmt.Sprintf("mutex-count:%d", each), m.file, counterFile))
	}
	for _, h := range hs {
		if err := h.exit(); err != nil {
			t.Fatal(err)
		}
	}
	mem, err := mapMemFile(counterFile, 4096)
	if err != nil {
		t.Fatal(err)
	}
	defer unmapAndClose(mem, counterFile)
	if got := atomic.LoadUint64((*uint64)(unsafe.Pointer(&mem[0]))); got != procs*each {
		t.Fatalf("counter %d, want %d: the mutex let two processes in", got, procs*each)
	}
}

// A process SIGKILLed while holding the mutex: the next process takes it
// over, and learns that it did; whether the dead holder was reaped yet or
// is still a zombie.
func TestMutexKilledHolder(t *testing.T) {
	for _, reaped := range []bool{true, false} {
		t.Run(fmt.Sprintf("reaped=%v", reaped), func(t *testing.T) {
			m := newTestMutex(t)
			h := startHelper(t, "mutex-hold", m.file)
			h.expect(t, "held")
			if reaped {
				if err := h.exit(); !killedBySIGKILL(err) {
					t.Fatalf("helper: %v", err)
				}
			}
			start := time.Now()
			ok, recovered := m.Acquire(5 * time.Second)
			if !ok || !recovered {
				t.Fatalf("Acquire = %v, %v; want the lock taken over", ok, recovered)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took over after %v", d)
			}
			if err := m.Release(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestSemaphoreKilledHolder(t *testing.T) {
	s := newTestSemaphore(t, 3, 3)
	h := startHelper(t, "sem-hold:2", s.file)
	h.expect(t, "held")
	if s.Value() != 1 {
		t.Fatalf("value %d while the helper holds 2 of 3", s.Value())
	}
	_ = h.exit()
	start := time.Now()
	for i := 0; i < 3; i++ {
		if !s.Acquire(5 * time.Second) {
			t.Fatalf("permit %d: the killed holder's permits did not come back", i)
		}
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("took %v", d)
	}
	if s.Value() != 0 || s.Held() != 3 {
		t.Fatalf("value %d, held %d", s.Value(), s.Held())
	}
}

func TestSemaphoreClosingHolderConsumes(t *testing.T) {
	s := newTestSemaphore(t, 1, 1)
	h := startHelper(t, "sem-take-close", s.file)
	if err := h.exit(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	s.lastReclaim.Store(0)
	if s.Acquire(60 * time.Millisecond) {
		t.Fatal("the permit of a process that closed the semaphore came back")
	}
}

func TestCondAcrossProcesses(t *testing.T) {
	c, m := newTestCond(t), newTestMutex(t)
	h := startHelper(t, "cond-wait", c.file, m.file)
	h.expect(t, "waiting")
	if ok, _ := m.Acquire(5 * time.Second); !ok {
		t.Fatal("no lock")
	}
	n := c.Notify(1)
	_ = m.Release()
	if n != 1 {
		t.Fatalf("Notify woke %d", n)
	}
	h.expect(t, "notified")
	if err := h.exit(); err != nil {
		t.Fatal(err)
	}
}

// A waiter SIGKILLed in its wait: Notify(1) does not hang and goes to the
// live waiter behind it.
func TestCondKilledWaiter(t *testing.T) {
	c, m := newTestCond(t), newTestMutex(t)
	h := startHelper(t, "cond-wait-die", c.file, m.file)
	h.expect(t, "waiting")
	_ = h.exit()
	slot, err := c.Enlist() // after the dead one
	if err != nil {
		t.Fatal(err)
	}
	if n := c.Notify(1); n != 1 {
		t.Fatalf("Notify woke %d", n)
	}
	if !c.Sleep(slot, time.Second) || !c.Leave(slot) {
		t.Fatal("the notification went to the dead waiter")
	}
	if c.Waiters() != 0 {
		t.Fatalf("%d waiters left", c.Waiters())
	}
}

func TestBarrierAcrossProcesses(t *testing.T) {
	b := newTestBarrier(t, 3)
	var hs []*helper
	for p := 0; p < 3; p++ {
		hs = append(hs, startHelper(t, "barrier-rounds:300", b.file))
	}
	for _, h := range hs {
		if err := h.exit(); err != nil {
			t.Fatal(err)
		}
	}
}

// A party SIGKILLed inside wait(), or between waits: the others get
// ErrBarrierBroken, within about ownerCheckInterval, instead of a hang.
func TestBarrierKilledParty(t *testing.T) {
	for _, role := range []string{"barrier-inside", "barrier-party"} {
		t.Run(role, func(t *testing.T) {
			// Two live parties wait: with the dead one inside, they are
			// still one short.
			parties := 3
			if role == "barrier-inside" {
				parties = 4
			}
			b := newTestBarrier(t, parties)
			h := startHelper(t, role, b.file)
			if role == "barrier-inside" {
				h.expect(t, "inside")
			} else {
				h.expect(t, "ready")
				_ = h.cmd.Process.Kill()
			}
			_ = h.exit()
			start := time.Now()
			errs := make(chan error, 2)
			for g := 0; g < 2; g++ {
				go func() { _, err := barrierWait(b, 20*time.Second, nil); errs <- err }()
			}
			for g := 0; g < 2; g++ {
				if err := <-errs; err != ErrBarrierBroken {
					t.Fatalf("with a killed party: %v", err)
				}
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Fatalf("broke after %v", d)
			}
			if err := b.Reset(); err != nil {
				t.Fatal(err)
			}
			if state, n := b.State(); state != BarrierFilling || n != 0 {
				t.Fatalf("state %d, %d inside after reset", state, n)
			}
		})
	}
}
