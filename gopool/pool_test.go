package gopool

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a worker: with GOPOOL_TEST_WORKER=1 it speaks
// the frame protocol on fds 3 and 4. A task's payload is a command:
//
//	echo:X   answer X          fail:X   answer X as an error
//	sleep:MS sleep, answer ok  exit:N   exit with code N
//	kill     SIGKILL itself    pid      answer its pid
//
// An init payload of "initfail" makes initialisation fail.
func TestMain(m *testing.M) {
	if os.Getenv("GOPOOL_TEST_WORKER") == "1" {
		os.Exit(testWorker())
	}
	os.Exit(m.Run())
}

func testWorker() int {
	in := bufio.NewReader(os.NewFile(3, "tasks"))
	out := os.NewFile(4, "results")
	init, err := readFrame(in)
	if err != nil || init.kind != kindInit {
		return 2
	}
	if string(init.payload) == "initfail" {
		_ = writeFrame(out, kindInitFailed, 0, []byte("init exploded"))
		return 1
	}
	for {
		f, err := readFrame(in)
		if err != nil {
			return 0
		}
		cmd, arg, _ := strings.Cut(string(f.payload), ":")
		status, answer := StatusOK, arg
		switch cmd {
		case "fail":
			status = StatusError
		case "sleep":
			ms, _ := strconv.Atoi(arg)
			time.Sleep(time.Duration(ms) * time.Millisecond)
		case "exit":
			n, _ := strconv.Atoi(arg)
			os.Exit(n)
		case "kill":
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			time.Sleep(time.Hour)
		case "pid":
			answer = strconv.Itoa(os.Getpid())
		case "retire":
			_ = writeFrame(out, byte(status), f.tag, []byte(answer))
			_ = writeFrame(out, kindRetiring, 0, nil)
			return 0
		}
		if err := writeFrame(out, byte(status), f.tag, []byte(answer)); err != nil {
			return 3
		}
	}
}

func newTestPool(t *testing.T, workers, maxTasks int, init string) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	p, err := New(Options{
		Workers:           workers,
		MaxTasksPerWorker: maxTasks,
		Spec: WorkerSpec{
			Argv:            []string{exe},
			Env:             append(os.Environ(), "GOPOOL_TEST_WORKER=1"),
			Init:            []byte(init),
			OwnProcessGroup: true,
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Terminate()
		if ok, _ := p.Join(5 * time.Second); !ok {
			t.Error("workers still alive 5 s after terminate")
		}
	})
	return p
}

func submit(t *testing.T, p *Pool, cmds ...string) int64 {
	t.Helper()
	return submitJob(t, p, 0, cmds...)
}

// collectAll returns the job's results by index.
func collectAll(t *testing.T, p *Pool, j int64) map[int64]Result {
	t.Helper()
	got := map[int64]Result{}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		rs, done, err := p.Collect(j, 0, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if _, dup := got[r.Index]; dup {
				t.Fatalf("result %d delivered twice", r.Index)
			}
			got[r.Index] = r
		}
		if done {
			return got
		}
	}
	t.Fatalf("job %d not done after 10 s; have %d results", j, len(got))
	return nil
}

func TestResultsMatchTheirTasks(t *testing.T) {
	p := newTestPool(t, 3, 0, "")
	cmds := make([]string, 200)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("echo:%d", i)
	}
	cmds[17] = "fail:boom"
	got := collectAll(t, p, submit(t, p, cmds...))
	if len(got) != len(cmds) {
		t.Fatalf("got %d results, want %d", len(got), len(cmds))
	}
	for i := range cmds {
		r := got[int64(i)]
		want, status := strconv.Itoa(i), StatusOK
		if i == 17 {
			want, status = "boom", StatusError
		}
		if r.Status != status || string(r.Payload) != want {
			t.Errorf("result %d = %v %q, want %v %q", i, r.Status, r.Payload, status, want)
		}
	}
	if _, _, err := p.Collect(999, 0, 0); err != ErrUnknownJob {
		t.Errorf("collect of an unknown job: %v", err)
	}
}

func TestDeadWorkerFailsItsTaskAndIsReplaced(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	for _, tc := range []struct{ cmd, code string }{{"kill", "-9"}, {"exit:3", "3"}} {
		got := collectAll(t, p, submit(t, p, tc.cmd))[0]
		fields := strings.Fields(string(got.Payload))
		if got.Status != StatusWorkerLost || len(fields) != 2 || fields[1] != tc.code {
			t.Fatalf("%s: got %v %q, want worker lost with code %s", tc.cmd, got.Status, got.Payload, tc.code)
		}
		if pid, _ := strconv.Atoi(fields[0]); pid <= 0 {
			t.Fatalf("%s: no pid in %q", tc.cmd, got.Payload)
		}
		after := collectAll(t, p, submit(t, p, "echo:alive"))[0]
		if after.Status != StatusOK || string(after.Payload) != "alive" {
			t.Fatalf("pool did not heal after %s: %v %q", tc.cmd, after.Status, after.Payload)
		}
	}
}

func submitJob(t *testing.T, p *Pool, timeout time.Duration, cmds ...string) int64 {
	t.Helper()
	j := p.NewJob(false, timeout)
	payloads := make([][]byte, len(cmds))
	for i, c := range cmds {
		payloads[i] = []byte(c)
	}
	if err := p.Submit(j, payloads); err != nil {
		t.Fatal(err)
	}
	if err := p.Seal(j); err != nil {
		t.Fatal(err)
	}
	return j
}

func TestTimeLimitStopsTheTaskAndReplacesTheWorker(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	start := time.Now()
	got := collectAll(t, p, submitJob(t, p, 100*time.Millisecond, "sleep:10000", "echo:next"))
	if got[0].Status != StatusTimedOut {
		t.Fatalf("slow task: %v %q", got[0].Status, got[0].Payload)
	}
	if got[1].Status != StatusOK || string(got[1].Payload) != "next" {
		t.Fatalf("task after the timeout: %v %q", got[1].Status, got[1].Payload)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if r := collectAll(t, p, submitJob(t, p, time.Second, "echo:fast"))[0]; r.Status != StatusOK {
		t.Fatalf("a fast task under a limit: %v", r.Status)
	}
}

func TestCancelStopsRunningAndQueuedTasks(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := submit(t, p, "sleep:10000", "echo:never")
	for p.Queued() > 1 {
		time.Sleep(time.Millisecond)
	}
	other := submit(t, p, "echo:other")
	if n, err := p.Cancel(j); err != nil || n != 2 {
		t.Fatalf("cancel: %d tasks, %v", n, err)
	}
	got := collectAll(t, p, j)
	for i := int64(0); i < 2; i++ {
		if got[i].Status != StatusCancelled {
			t.Errorf("task %d: %v", i, got[i].Status)
		}
	}
	if r := collectAll(t, p, other)[0]; r.Status != StatusOK || string(r.Payload) != "other" {
		t.Fatalf("another job after the cancel: %v %q", r.Status, r.Payload)
	}
	if _, err := p.Cancel(999); err != ErrUnknownJob {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

func TestRetiringWorkerHandsBackItsTasks(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	collectAll(t, p, submit(t, p, "echo:warm", "echo:up")) // short tasks: pipelining on
	cmds := []string{"echo:0", "retire:1", "echo:2", "echo:3", "echo:4"}
	got := collectAll(t, p, submit(t, p, cmds...))
	for i, c := range cmds {
		_, want, _ := strings.Cut(c, ":")
		if r := got[int64(i)]; r.Status != StatusOK || string(r.Payload) != want {
			t.Errorf("task %d: %v %q", i, r.Status, r.Payload)
		}
	}
}

func TestCancelSparesAnotherJobsRunningTask(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	collectAll(t, p, submit(t, p, "echo:warm", "echo:up")) // short tasks: pipelining on
	head := submit(t, p, "sleep:300")
	behind := submit(t, p, "echo:behind")
	if n, err := p.Cancel(behind); err != nil || n != 1 {
		t.Fatalf("cancel: %d, %v", n, err)
	}
	if r := collectAll(t, p, head)[0]; r.Status != StatusOK {
		t.Fatalf("the other job's running task: %v %q", r.Status, r.Payload)
	}
	if r := collectAll(t, p, behind)[0]; r.Status != StatusCancelled {
		t.Fatalf("the cancelled task: %v", r.Status)
	}
}

func TestPipelinedTasksBehindADeathAreRetried(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	collectAll(t, p, submit(t, p, "echo:warm", "echo:up")) // short tasks: pipelining on
	cmds := make([]string, 40)
	for i := range cmds {
		cmds[i] = fmt.Sprintf("echo:%d", i)
	}
	cmds[5] = "kill"
	got := collectAll(t, p, submit(t, p, cmds...))
	for i := range cmds {
		r := got[int64(i)]
		if i == 5 {
			if r.Status != StatusWorkerLost {
				t.Errorf("the killing task: %v", r.Status)
			}
			continue
		}
		if r.Status != StatusOK || string(r.Payload) != strconv.Itoa(i) {
			t.Errorf("task %d: %v %q", i, r.Status, r.Payload)
		}
	}
}

func TestShortTasksArePipelined(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	collectAll(t, p, submit(t, p, "echo:a", "echo:b", "echo:c"))
	p.mu.Lock()
	depth := p.depthLocked()
	p.mu.Unlock()
	if depth < 2 {
		t.Fatalf("depth %d after short tasks, want pipelining", depth)
	}
	p.mu.Lock()
	p.taskTime = pipelineBudget
	depth = p.depthLocked()
	p.mu.Unlock()
	if depth != 1 {
		t.Fatalf("depth %d for tasks of %v", depth, pipelineBudget)
	}
}

func TestTerminateFailsUnfinishedTasksAndStopsWorkers(t *testing.T) {
	p := newTestPool(t, 2, 0, "")
	j := submit(t, p, "sleep:10000", "sleep:10000", "sleep:10000", "echo:never")
	for len(p.Workers()) < 2 || p.Queued() > 2 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	p.Terminate()
	got := collectAll(t, p, j)
	for i := int64(0); i < 4; i++ {
		if got[i].Status != StatusTerminated {
			t.Errorf("task %d: status %v, want terminated", i, got[i].Status)
		}
	}
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("join timed out after terminate")
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("terminate+join took %v", d)
	}
}

func TestCloseFinishesOutstandingWork(t *testing.T) {
	p := newTestPool(t, 2, 0, "")
	if _, err := p.Join(0); err != ErrNotRunning {
		t.Fatalf("join of a running pool: %v", err)
	}
	j := submit(t, p, "sleep:50", "sleep:50", "echo:a", "echo:b", "echo:c")
	p.Close()
	got := collectAll(t, p, j)
	for i := int64(0); i < 5; i++ {
		if got[i].Status != StatusOK {
			t.Errorf("task %d: %v", i, got[i].Status)
		}
	}
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("workers did not exit after close")
	}
}

func TestCloseWaitsForOpenJobs(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := p.NewJob(false, 0)
	p.Close()
	if ok, _ := p.Join(100 * time.Millisecond); ok {
		t.Fatal("workers exited while a job was still open")
	}
	if err := p.Submit(j, [][]byte{[]byte("echo:late")}); err != nil {
		t.Fatal(err)
	}
	if err := p.Seal(j); err != nil {
		t.Fatal(err)
	}
	if r := collectAll(t, p, j)[0]; r.Status != StatusOK || string(r.Payload) != "late" {
		t.Fatalf("late task: %v %q", r.Status, r.Payload)
	}
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("workers did not exit once the job was sealed")
	}
}

func TestMaxTasksPerWorkerRetiresWorkers(t *testing.T) {
	p := newTestPool(t, 1, 2, "")
	got := collectAll(t, p, submit(t, p, "pid", "pid", "pid", "pid", "pid"))
	pids := map[string]bool{}
	for _, r := range got {
		pids[string(r.Payload)] = true
	}
	if len(pids) != 3 {
		t.Fatalf("5 tasks at 2 per worker ran in %d workers, want 3", len(pids))
	}
}

func TestInitFailureFailsTasksWithoutRespawning(t *testing.T) {
	p := newTestPool(t, 2, 0, "initfail")
	got := collectAll(t, p, submit(t, p, "echo:1", "echo:2", "echo:3"))
	for i, r := range got {
		if r.Status != StatusInitFailed || string(r.Payload) != "init exploded" {
			t.Errorf("task %d: %v %q", i, r.Status, r.Payload)
		}
	}
	later := collectAll(t, p, submit(t, p, "echo:4"))[0]
	if later.Status != StatusInitFailed {
		t.Errorf("task after the failure: %v", later.Status)
	}
	p.Close()
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("workers were respawned or did not exit")
	}
}

func TestNotifyJobsAreAnnounced(t *testing.T) {
	p := newTestPool(t, 2, 0, "")
	quiet := submit(t, p, "echo:q")
	j := p.NewJob(true, 0)
	if err := p.Submit(j, [][]byte{[]byte("echo:x"), []byte("echo:y")}); err != nil {
		t.Fatal(err)
	}
	collectAll(t, p, quiet)
	if ev := p.NextEvents(50 * time.Millisecond); len(ev) != 0 {
		t.Fatalf("event before the job was sealed: %v", ev)
	}
	if err := p.Seal(j); err != nil {
		t.Fatal(err)
	}
	var ev []int64
	for deadline := time.Now().Add(5 * time.Second); len(ev) == 0 && time.Now().Before(deadline); {
		ev = p.NextEvents(100 * time.Millisecond)
	}
	if len(ev) != 1 || ev[0] != j {
		t.Fatalf("events %v, want [%d]", ev, j)
	}
	if got := collectAll(t, p, j); len(got) != 2 {
		t.Fatalf("got %d results", len(got))
	}
}

func TestDiscardDropsResults(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := submit(t, p, "sleep:20")
	p.Discard(j)
	if _, _, err := p.Collect(j, 0, 0); err != ErrUnknownJob {
		t.Fatalf("collect after discard: %v", err)
	}
	if r := collectAll(t, p, submit(t, p, "echo:ok"))[0]; r.Status != StatusOK {
		t.Fatalf("pool unusable after discard: %v", r.Status)
	}
}

func TestSplitRecords(t *testing.T) {
	blob := []byte{2, 0, 0, 0, 0, 0, 0, 0, 'h', 'i', 0, 0, 0, 0, 0, 0, 0, 0}
	recs, err := SplitRecords(blob)
	if err != nil || len(recs) != 2 || string(recs[0]) != "hi" || len(recs[1]) != 0 {
		t.Fatalf("got %q, %v", recs, err)
	}
	if _, err := SplitRecords(blob[:5]); err == nil {
		t.Fatal("truncated header accepted")
	}
	if _, err := SplitRecords([]byte{9, 0, 0, 0, 0, 0, 0, 0, 'x'}); err == nil {
		t.Fatal("truncated record accepted")
	}
}
