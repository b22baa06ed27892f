package shm

import (
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func lockFor(t *testing.T) (robustLock, *uint64) {
	t.Helper()
	word := new(uint64)
	return robustLock{word}, word
}

func TestRobustLockExcludes(t *testing.T) {
	l, _ := lockFor(t)
	var inside, counter int64
	var wg sync.WaitGroup
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				if ok, recovered := l.lock(newDeadline(10 * time.Second)); !ok || recovered {
					t.Errorf("lock = %v, %v", ok, recovered)
					return
				}
				if atomic.AddInt64(&inside, 1) != 1 {
					t.Error("two holders at once")
				}
				counter++
				atomic.AddInt64(&inside, -1)
				l.unlock()
			}
		}()
	}
	wg.Wait()
	if counter != 16000 {
		t.Fatalf("counter = %d", counter)
	}
}

// A live owner (here: this process, as another thread would be) is waited
// for, up to the deadline; its unlock wakes the waiter.
func TestRobustLockLiveOwner(t *testing.T) {
	l, word := lockFor(t)
	*word = lockerID()
	start := time.Now()
	if ok, _ := l.lock(newDeadline(60 * time.Millisecond)); ok {
		t.Fatal("took a lock whose owner is alive")
	}
	if d := time.Since(start); d < 55*time.Millisecond {
		t.Fatalf("gave up after %v", d)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		l.unlock()
	}()
	if ok, recovered := l.lock(newDeadline(5 * time.Second)); !ok || recovered {
		t.Fatalf("lock after unlock = %v, %v", ok, recovered)
	}
}

func exitedPid(t *testing.T) int {
	t.Helper()
	cmd := exec.Command("true")
	if err := cmd.Run(); err != nil {
		t.Skip("cannot run true:", err)
	}
	return cmd.Process.Pid
}

func TestRobustLockDeadOwner(t *testing.T) {
	cases := map[string]func(t *testing.T) uint64{
		"exited": func(t *testing.T) uint64 { return uint64(exitedPid(t)) },
		"zombie": func(t *testing.T) uint64 {
			cmd := exec.Command("sleep", "60")
			if err := cmd.Start(); err != nil {
				t.Skip("cannot run sleep:", err)
			}
			pid := cmd.Process.Pid
			token, _ := processToken(pid)
			_ = cmd.Process.Kill()
			t.Cleanup(func() { _ = cmd.Wait() }) // a zombie until then
			// Wait until it is a zombie.
			for {
				if _, state, ok := procStat(pid); !ok || state == 'Z' {
					break
				}
				time.Sleep(time.Millisecond)
			}
			return uint64(token)<<32 | uint64(pid)
		},
		"pid reused": func(t *testing.T) uint64 {
			// Our own pid with another start time: the owner was an
			// earlier process that had this pid.
			me := lockerID()
			return (me + 1<<32) &^ lockWaiters
		},
	}
	for name, owner := range cases {
		t.Run(name, func(t *testing.T) {
			l, word := lockFor(t)
			*word = owner(t) | lockWaiters
			start := time.Now()
			ok, recovered := l.lock(newDeadline(5 * time.Second))
			if !ok || !recovered {
				t.Fatalf("lock = %v, %v; want the lock taken over", ok, recovered)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took over after %v", d)
			}
			if got := atomic.LoadUint64(word) &^ lockWaiters; got != lockerID() {
				t.Fatalf("lock word %x, want %x", got, lockerID())
			}
			l.unlock()
			// A non-blocking attempt takes over too.
			*word = owner(t)
			if ok, recovered := l.lock(newDeadline(0)); !ok || !recovered {
				t.Fatalf("non-blocking lock = %v, %v", ok, recovered)
			}
		})
	}
}

func TestOwnerAlive(t *testing.T) {
	if !ownerAlive(lockerID()) {
		t.Fatal("this process is not alive")
	}
	if ownerAlive(uint64(exitedPid(t))) {
		t.Fatal("an exited process is alive")
	}
	if ownerAlive(uint64(os.Getppid()) | 12345<<32) {
		t.Fatal("a token mismatch should mean a reused pid")
	}
}
