package shm

import (
	"bufio"
	"fmt"
	"math/rand"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a queue client: with GOPOOL_QUEUE_TEST_ROLE
// set, it maps the queue inherited as fd 3 and plays that role (init runs
// before TestMain, so the pool tests' worker mode is not involved):
//
//	produce:ID:N      print "ready", put N checked items of producer ID, exit
//	produce:ID:-1     put checked items of producer ID until killed
//	consume           take items, print "producer seq" for each, until killed
//	hold-wlock        take the producers' lock, print "locked", die by SIGKILL
//	hold-rlock        the same with the consumers' lock
//	produce-nowait:ID:N  put N items "ID seq" with timeout 0, exit
//	consume-nowait:N  take N items with timeout 0, print each, exit
func init() {
	role := os.Getenv("GOPOOL_QUEUE_TEST_ROLE")
	if role == "" {
		return
	}
	os.Exit(queueClient(role))
}

func queueClient(role string) int {
	q, err := OpenQueue(3)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	args := strings.Split(role, ":")
	switch args[0] {
	case "produce-nowait", "consume-nowait":
		return nonBlockingClient(q, args)
	case "produce":
		id, _ := strconv.Atoi(args[1])
		n, _ := strconv.Atoi(args[2])
		rng := rand.New(rand.NewSource(int64(os.Getpid())))
		fmt.Fprintln(out, "ready")
		out.Flush()
		for seq := 0; n < 0 || seq < n; seq++ {
			size := 16 + rng.Intn(2000)
			if rng.Intn(20) == 0 {
				size = 16 + rng.Intn(256<<10) // a long copy: a wide window to die in
			}
			item := checked(uint32(id), uint64(seq), size, rng)
			if err := q.Put(item, 10*time.Second); err != nil {
				fmt.Fprintln(os.Stderr, "put:", err)
				return 3
			}
		}
	case "consume":
		buf := make([]byte, 1<<20)
		for {
			n, err := q.Get(buf, 10*time.Second)
			if err != nil {
				fmt.Fprintln(os.Stderr, "get:", err)
				return 3
			}
			p, seq, err := verify(buf[:n])
			if err != nil {
				fmt.Fprintln(os.Stderr, "get:", err)
				return 4
			}
			fmt.Fprintf(out, "%d %d\n", p, seq)
			out.Flush()
		}
	case "hold-wlock", "hold-rlock":
		l := q.wlock
		if args[0] == "hold-rlock" {
			l = q.rlock
		}
		if ok, _ := l.lock(newDeadline(10 * time.Second)); !ok {
			return 3
		}
		fmt.Fprintln(out, "locked")
		out.Flush()
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		time.Sleep(time.Hour)
	}
	out.Flush()
	return 0
}

// startClient starts the test binary in a role, sharing q.
func startClient(t *testing.T, q *Queue, role string) (*exec.Cmd, *bufio.Reader) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "GOPOOL_QUEUE_TEST_ROLE="+role)
	cmd.ExtraFiles = []*os.File{q.file}
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, bufio.NewReader(stdout)
}

func TestQueueAcrossProcesses(t *testing.T) {
	q := newTestQueue(t, QueueOptions{MaxItems: 100, RingSize: 1 << 20})
	const producers, perProducer = 3, 3000
	var cmds []*exec.Cmd
	for p := 0; p < producers; p++ {
		cmd, _ := startClient(t, q, fmt.Sprintf("produce:%d:%d", p, perProducer))
		cmds = append(cmds, cmd)
	}
	next := make([]uint64, producers)
	buf := make([]byte, 1<<20)
	for i := 0; i < producers*perProducer; i++ {
		n, err := q.Get(buf, 20*time.Second)
		if err != nil {
			t.Fatalf("item %d: %v", i, err)
		}
		p, seq, err := verify(buf[:n])
		if err != nil {
			t.Fatal(err)
		}
		if seq != next[p] {
			t.Fatalf("producer %d: got item %d, want %d", p, seq, next[p])
		}
		next[p]++
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("producer: %v", err)
		}
	}
}

// TestQueueDeadLockHolder: a process SIGKILLed while it holds a lock does
// not block the others for long.
func TestQueueDeadLockHolder(t *testing.T) {
	for _, role := range []string{"hold-wlock", "hold-rlock"} {
		t.Run(role, func(t *testing.T) {
			q := newTestQueue(t, QueueOptions{RingSize: 1 << 20})
			cmd, out := startClient(t, q, role)
			if line, _ := out.ReadString('\n'); line != "locked\n" {
				t.Fatalf("client said %q", line)
			}
			_ = cmd.Wait() // killed; reaped, so it is not even a zombie
			start := time.Now()
			mustPut(t, q, []byte("after"))
			if got := string(mustGet(t, q)); got != "after" {
				t.Fatalf("got %q", got)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("took %v to recover the lock", d)
			}
		})
	}
}

// TestQueueKilledPeers SIGKILLs producers and a consumer at random moments
// while this process consumes too: every item that arrives is intact and
// arrives once; a killed producer's items form a prefix of what it put
// (nothing after a lost item); at most one item per killed consumer is
// lost; and the queue works afterwards.
func TestQueueKilledPeers(t *testing.T) {
	if testing.Short() {
		t.Skip("stress test")
	}
	q := newTestQueue(t, QueueOptions{RingSize: 4 << 20})
	rng := rand.New(rand.NewSource(time.Now().UnixNano()))
	type key struct{ p, seq uint64 }
	var mu sync.Mutex
	received := map[key]bool{}
	record := func(p, seq uint64) {
		mu.Lock()
		defer mu.Unlock()
		k := key{p, seq}
		if received[k] {
			t.Errorf("producer %d item %d received twice", p, seq)
		}
		received[k] = true
	}

	// A consumer process, killed and restarted now and then; it reports
	// what it took.
	var consumerKills int
	type consumerProc struct {
		cmd  *exec.Cmd
		done chan struct{} // its report is read to the end
	}
	startConsumer := func() consumerProc {
		cmd, out := startClient(t, q, "consume")
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				line, err := out.ReadString('\n')
				if err != nil {
					return
				}
				var p, seq uint64
				if _, err := fmt.Sscan(line, &p, &seq); err == nil {
					record(p, seq)
				}
			}
		}()
		return consumerProc{cmd, done}
	}
	kill := func(c consumerProc) {
		_ = c.cmd.Process.Kill()
		<-c.done // read what it reported before it died, then reap it
		_ = c.cmd.Wait()
	}
	consumer := startConsumer()

	// This process consumes concurrently.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 1<<20)
		for {
			n, err := q.Get(buf, 20*time.Millisecond)
			if err == ErrQueueEmpty {
				select {
				case <-stop:
					return
				default:
					continue
				}
			}
			if err != nil {
				t.Errorf("get: %v", err)
				return
			}
			p, seq, err := verify(buf[:n])
			if err != nil {
				t.Errorf("get: %v", err)
				return
			}
			record(uint64(p), seq)
		}
	}()

	const rounds = 100
	id := 0
	for round := 0; round < rounds; round++ {
		var producers []*exec.Cmd
		for k := 0; k < 3; k++ {
			cmd, out := startClient(t, q, fmt.Sprintf("produce:%d:-1", id))
			id++
			if line, _ := out.ReadString('\n'); line != "ready\n" {
				t.Fatalf("producer said %q", line)
			}
			producers = append(producers, cmd)
		}
		for _, cmd := range producers { // at random moments, mid-put or not
			time.Sleep(time.Duration(rng.Intn(8000)) * time.Microsecond)
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		if round%10 == 5 {
			kill(consumer)
			consumerKills++
			consumer = startConsumer()
		}
	}
	// Drain, then stop the consumers.
	deadline := time.Now().Add(20 * time.Second)
	for q.Len() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d items never taken", q.Len())
		}
		time.Sleep(5 * time.Millisecond)
	}
	kill(consumer)
	close(stop)
	wg.Wait()

	// Each producer's items are 0..k-1 (at most the item being put when it
	// died is missing, and it is the last); items missing in the middle are
	// those a killed consumer took.
	maxSeq := map[uint64]uint64{}
	count := map[uint64]uint64{}
	for k := range received {
		count[k.p]++
		if k.seq+1 > maxSeq[k.p] {
			maxSeq[k.p] = k.seq + 1
		}
	}
	var lost uint64
	for p, m := range maxSeq {
		lost += m - count[p]
	}
	if lost > uint64(consumerKills+1) { // +1: the consumer killed at the end
		t.Fatalf("%d items lost with %d consumers killed", lost, consumerKills+1)
	}
	t.Logf("%d producers, %d items received, %d lost to %d killed consumers",
		id, len(received), lost, consumerKills+1)

	mustPut(t, q, []byte("after"))
	if got := string(mustGet(t, q)); got != "after" {
		t.Fatalf("got %q", got)
	}
}
