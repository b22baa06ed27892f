package gopool

import (
	"bytes"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gopool/gopool/gopool/shm"
)

// The test binary doubles as a worker: with GOPOOL_TEST_WORKER=1 it speaks
// the worker protocol over the channel and doorbell it inherits as fds 3
// and 4 (the Go side of the peer's role in shm). A task's payload is a
// command:
//
//	echo:X      answer X                 fail:X     answer X as an error
//	sleep:MS    sleep, answer ok         exit:N     exit with code N
//	kill        SIGKILL itself           pid        answer its pid
//	retire:X    answer X, then retire    big:N      answer N bytes
//	mark:PATH   create PATH, answer ok   say-exit:X answer X, then exit 0
//	softsleep:MS sleep, or until told of the soft time limit: answer "soft"
//
// An init payload of "initfail" makes initialisation fail.
func TestMain(m *testing.M) {
	if len(os.Args) == 2 && os.Args[1] == "zygote" {
		os.Exit(testZygote())
	}
	if os.Getenv("GOPOOL_TEST_CHILD") == "1" {
		os.Exit(testChild())
	}
	if os.Getenv("GOPOOL_TEST_WORKER") == "1" {
		os.Exit(testWorker())
	}
	os.Exit(m.Run())
}

func testWorker() int {
	ch, err := shm.OpenChannel(ChannelFd)
	if err != nil {
		return 10
	}
	bell, err := shm.OpenDoorbell(DoorbellFd)
	if err != nil {
		return 11
	}
	ch.RingUpWith(bell)
	in, out := shm.NewMessageReader(&ch.Down), shm.NewMessageWriter(&ch.Up)
	reply := func(kind uint32, tag uint64, payload []byte) {
		if err := out.Write(shm.MessageHeader{Kind: kind, Tag: tag}, payload, time.Minute); err != nil {
			os.Exit(12)
		}
	}
	h, init, err := in.Read(time.Minute, 0)
	if err != nil || h.Kind != MsgInit {
		return 2
	}
	ch.SetPhase(PhaseInitializing)
	switch string(init) {
	case "initfail":
		reply(MsgInitFailed, 0, []byte("init exploded"))
		return 1
	case "initexit":
		return 4
	}
	if path, ok := strings.CutPrefix(string(init), "initkilled:"); ok {
		killOnce := strings.HasSuffix(path, ".once")
		_, statErr := os.Stat(path)
		if !killOnce || statErr != nil {
			f, err := os.OpenFile(path, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
			if err == nil {
				f.Write([]byte("x"))
				f.Close()
			}
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
		}
	}
	ch.SetPhase(PhaseReady)
	soft := make(chan os.Signal, 1)
	signal.Notify(soft, SoftLimitSignal)
	for {
		h, payload, err := in.Read(time.Minute, bell.WorkerSpin())
		if err != nil {
			return 3
		}
		if h.Kind == MsgStop {
			return 0
		}
		if !ch.Begin(h.Tag) {
			// A slow answer, as from a worker that must first take a lock:
			// the core must read it whenever it comes.
			time.Sleep(20 * time.Millisecond)
			reply(MsgSkipped, h.Tag, nil)
			continue
		}
		cmd, arg, _ := strings.Cut(string(payload), ":")
		kind, answer := uint32(MsgResultOK), []byte(arg)
		switch cmd {
		case "fail":
			kind = MsgResultError
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
			answer = []byte(strconv.Itoa(os.Getpid()))
		case "big":
			n, _ := strconv.Atoi(arg)
			answer = bytes.Repeat([]byte{'b'}, n)
		case "softsleep":
			ms, _ := strconv.Atoi(arg)
			select {
			case <-time.After(time.Duration(ms) * time.Millisecond):
			case <-soft:
				if ch.SoftLimit() == h.Tag {
					answer = []byte("soft")
				}
			}
		case "mark":
			if err := os.WriteFile(arg, nil, 0o600); err != nil {
				kind = MsgResultError
			}
		}
		ch.End()
		reply(kind, h.Tag, answer)
		switch cmd {
		case "retire":
			reply(MsgRetiring, 0, nil)
			return 0
		case "say-exit":
			return 0
		}
	}
}

func newTestPool(t *testing.T, workers, maxTasks int, init string) *Pool {
	return newTestPoolWith(t, Options{Workers: workers, MaxTasksPerWorker: maxTasks, Spec: WorkerSpec{Init: []byte(init)}})
}

func newTestPoolWith(t *testing.T, opts Options) *Pool {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	opts.Spec.Argv = []string{exe}
	opts.Spec.Env = append(os.Environ(), "GOPOOL_TEST_WORKER=1")
	opts.Spec.OwnProcessGroup = true
	p, err := New(opts)
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

func payloads(cmds []string) []Payload {
	out := make([]Payload, len(cmds))
	for i, c := range cmds {
		out[i] = Payload{[]byte(c)}
	}
	return out
}

func submit(t *testing.T, p *Pool, cmds ...string) int64 {
	t.Helper()
	return submitJob(t, p, JobSpec{}, cmds...)
}

func submitJob(t *testing.T, p *Pool, spec JobSpec, cmds ...string) int64 {
	t.Helper()
	j, err := p.Submit(spec, payloads(cmds), true)
	if err != nil {
		t.Fatal(err)
	}
	return j
}

// collectAll returns the job's results by index.
func collectAll(t *testing.T, p *Pool, j int64) map[int64]Result {
	t.Helper()
	got := map[int64]Result{}
	deadline := time.Now().Add(10 * time.Second)
	handled := int64(0)
	for time.Now().Before(deadline) {
		rs, done, _, err := p.Collect(j, handled, nil, 100*time.Millisecond)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			if _, dup := got[r.Index]; dup {
				t.Fatalf("result %d delivered twice", r.Index)
			}
			got[r.Index] = r
		}
		handled += int64(len(rs))
		if done {
			p.Ack(j, handled)
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
	if _, _, _, err := p.Collect(999, 0, nil, 0); err != ErrUnknownJob {
		t.Errorf("collect of an unknown job: %v", err)
	}
}

// A task in parts reaches the worker as one payload.
func TestTaskInPartsArrivesWhole(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j, err := p.Submit(JobSpec{}, []Payload{{[]byte("ec"), []byte("ho:"), bytes.Repeat([]byte("z"), 200_000)}}, true)
	if err != nil {
		t.Fatal(err)
	}
	if r := collectAll(t, p, j)[0]; r.Status != StatusOK || len(r.Payload) != 200_000 {
		t.Fatalf("got %v, %d bytes", r.Status, len(r.Payload))
	}
}

// Tasks and results many times larger than a channel's ring go through.
func TestLargeTasksAndResultsStreamThroughTheChannel(t *testing.T) {
	p := newTestPoolWith(t, Options{Workers: 2, ChannelRingSize: 64 << 10})
	big := "echo:" + strings.Repeat("x", 1<<20)
	got := collectAll(t, p, submit(t, p, big, "big:3000000", "echo:small", big))
	if r := got[0]; r.Status != StatusOK || len(r.Payload) != 1<<20 || r.Payload[12345] != 'x' {
		t.Fatalf("large task: %v, %d bytes", r.Status, len(r.Payload))
	}
	if r := got[1]; r.Status != StatusOK || len(r.Payload) != 3000000 || r.Payload[2999999] != 'b' {
		t.Fatalf("large result: %v, %d bytes", r.Status, len(r.Payload))
	}
	if r := got[2]; string(r.Payload) != "small" || len(got[3].Payload) != 1<<20 {
		t.Fatalf("tasks around the large ones: %q, %d bytes", r.Payload, len(got[3].Payload))
	}
}

func TestDeadWorkerFailsItsTaskAndIsReplaced(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	for _, tc := range []struct {
		cmd  string
		exit ExitStatus
	}{{"kill", ExitStatus{Code: -1, Signal: syscall.SIGKILL}}, {"exit:3", ExitStatus{Code: 3}}} {
		got := collectAll(t, p, submit(t, p, tc.cmd))[0]
		if got.Status != StatusWorkerLost || got.Exit != tc.exit || got.Pid <= 0 {
			t.Fatalf("%s: got %v pid %d exit %+v, want worker lost with %+v", tc.cmd, got.Status, got.Pid, got.Exit, tc.exit)
		}
		after := collectAll(t, p, submit(t, p, "echo:alive"))[0]
		if after.Status != StatusOK || string(after.Payload) != "alive" {
			t.Fatalf("pool did not heal after %s: %v %q", tc.cmd, after.Status, after.Payload)
		}
	}
}

// A result a worker published before it exited is delivered, and tasks it
// held behind it (that never began) run elsewhere.
func TestResultsPublishedBeforeAnExitAreKept(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	pipelining(p)
	got := collectAll(t, p, submit(t, p, "say-exit:first", "echo:second", "echo:third"))
	for i, want := range []string{"first", "second", "third"} {
		if r := got[int64(i)]; r.Status != StatusOK || string(r.Payload) != want {
			t.Errorf("task %d: %v %q", i, r.Status, r.Payload)
		}
	}
}

func TestTimeLimitStopsTheTaskAndReplacesTheWorker(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	start := time.Now()
	got := collectAll(t, p, submitJob(t, p, JobSpec{Timeout: 100 * time.Millisecond}, "sleep:10000", "echo:next"))
	if got[0].Status != StatusTimedOut || got[0].Pid <= 0 {
		t.Fatalf("slow task: %v pid %d", got[0].Status, got[0].Pid)
	}
	if got[1].Status != StatusOK || string(got[1].Payload) != "next" {
		t.Fatalf("task after the timeout: %v %q", got[1].Status, got[1].Payload)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("took %v", d)
	}
	if r := collectAll(t, p, submitJob(t, p, JobSpec{Timeout: time.Second}, "echo:fast"))[0]; r.Status != StatusOK {
		t.Fatalf("a fast task under a limit: %v", r.Status)
	}
}

// Past its soft limit a task is told (and may end); past its hard limit
// it is stopped. A task that ends in time is not told.
func TestSoftLimitTellsTheRunningTask(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	spec := JobSpec{SoftTimeout: 100 * time.Millisecond, Timeout: 5 * time.Second}
	got := collectAll(t, p, submitJob(t, p, spec, "softsleep:10000", "softsleep:10"))
	if r := got[0]; r.Status != StatusOK || string(r.Payload) != "soft" {
		t.Fatalf("the slow task: %v %q", r.Status, r.Payload)
	}
	if r := got[1]; r.Status != StatusOK || string(r.Payload) != "10" {
		t.Fatalf("the quick task: %v %q", r.Status, r.Payload)
	}
	spec = JobSpec{SoftTimeout: 50 * time.Millisecond, Timeout: 200 * time.Millisecond}
	if r := collectAll(t, p, submitJob(t, p, spec, "sleep:10000"))[0]; r.Status != StatusTimedOut {
		t.Fatalf("a task that ignores its soft limit: %v", r.Status)
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
	pipelining(p)
	cmds := []string{"echo:0", "retire:1", "echo:2", "echo:3", "echo:4"}
	got := collectAll(t, p, submit(t, p, cmds...))
	for i, c := range cmds {
		_, want, _ := strings.Cut(c, ":")
		if r := got[int64(i)]; r.Status != StatusOK || string(r.Payload) != want {
			t.Errorf("task %d: %v %q", i, r.Status, r.Payload)
		}
	}
}

// pipelining makes the pool believe tasks are very short, so that it
// gives a worker several at once.
func pipelining(p *Pool) {
	p.mu.Lock()
	p.taskTime = time.Microsecond
	p.mu.Unlock()
}

// A task written ahead to a worker busy with another job's task, then
// cancelled, never runs, and the busy worker is spared.
func TestCancelledPipelinedTaskNeverRunsAndSparesTheWorker(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	mark := filepath.Join(t.TempDir(), "ran")
	pipelining(p)
	head := submit(t, p, "sleep:300")
	behind := submit(t, p, "mark:"+mark)
	p.mu.Lock()
	for w := range p.workers {
		if len(w.inflight) != 2 || len(w.outbox) != 0 {
			t.Errorf("worker holds %d tasks, %d unwritten: want both written", len(w.inflight), len(w.outbox))
		}
	}
	p.mu.Unlock()
	if n, err := p.Cancel(behind); err != nil || n != 1 {
		t.Fatalf("cancel: %d, %v", n, err)
	}
	if r := collectAll(t, p, head)[0]; r.Status != StatusOK {
		t.Fatalf("the other job's running task: %v", r.Status)
	}
	if r := collectAll(t, p, behind)[0]; r.Status != StatusCancelled {
		t.Fatalf("the cancelled task: %v", r.Status)
	}
	collectAll(t, p, submit(t, p, "echo:after")) // the worker has passed the skipped task
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("the cancelled task ran")
	}
	if ws := p.Workers(); len(ws) != 1 || ws[0].TasksDone != 2 {
		t.Fatalf("workers %+v: want the same worker, 2 tasks done", ws)
	}
}

// A worker left holding only a revoked task is idle again once its skip is
// read, even when nobody waits for a result: a closed pool's join ends.
func TestJoinAfterARevokedTaskIsNotStuckOnIt(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	pipelining(p)
	head := submit(t, p, "sleep:100")
	behind := submit(t, p, "echo:behind")
	if n, err := p.CancelPending(behind); err != nil || n != 1 {
		t.Fatalf("cancel: %d, %v", n, err)
	}
	collectAll(t, p, head)
	p.Close()
	if ok, err := p.Join(10 * time.Second); !ok || err != nil {
		t.Fatalf("join: %v, %v; workers %+v", ok, err, p.Workers())
	}
}

func TestPipelinedTasksBehindADeathAreRetried(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	pipelining(p)
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

// With short tasks a worker is given several at once (it never waits for
// the core between them); with long ones, one at a time.
func TestShortTasksArePipelined(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	pipelining(p)
	cmds := make([]string, 200)
	for i := range cmds {
		cmds[i] = "echo:x"
	}
	j := submit(t, p, cmds...)
	p.mu.Lock()
	held := 0
	for w := range p.workers {
		held = len(w.inflight)
	}
	p.taskTime = pipelineBudget
	p.mu.Unlock()
	if held < 2 {
		t.Fatalf("a worker holds %d short tasks, want several", held)
	}
	collectAll(t, p, j)
	j = submit(t, p, "sleep:20", "sleep:20", "sleep:20")
	p.mu.Lock()
	p.taskTime = pipelineBudget
	p.mu.Unlock()
	collectAll(t, p, submit(t, p, "echo:settle"))
	collectAll(t, p, j)
	p.mu.Lock()
	defer p.mu.Unlock()
	if d := p.depthLocked(); d != 1 {
		t.Fatalf("depth %d for tasks of %v", d, p.taskTime)
	}
}

// A thread waiting for a result is woken by the worker that publishes it,
// not by the end of its timeout.
func TestCollectWakesWhenTheResultArrives(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	collectAll(t, p, submit(t, p, "echo:warm"))
	for i := 0; i < 10; i++ {
		j := submit(t, p, "sleep:20")
		start := time.Now()
		rs, done, _, err := p.Collect(j, 0, nil, 10*time.Second)
		if err != nil || len(rs) != 1 || !done {
			t.Fatalf("collect: %v, %d results, done %v", err, len(rs), done)
		}
		p.Ack(j, 1)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("a 20 ms task took %v to collect", d)
		}
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
	if r := collectAll(t, p, submit(t, p, "echo:late"))[0]; r.Status != StatusTerminated {
		t.Errorf("task after terminate: %v", r.Status)
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
	j, err := p.Submit(JobSpec{}, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	p.Close()
	if ok, _ := p.Join(100 * time.Millisecond); ok {
		t.Fatal("workers exited while a job was still open")
	}
	if _, err := p.Submit(JobSpec{ID: j}, payloads([]string{"echo:late"}), true); err != nil {
		t.Fatal(err)
	}
	if _, err := p.Submit(JobSpec{ID: j}, nil, false); err == nil {
		t.Fatal("added to a sealed job")
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

// A worker that dies in its initialisation (an initializer that exits)
// fails the tasks, and the pool does not start workers forever.
func TestDeathInInitialisationFailsThePool(t *testing.T) {
	p := newTestPool(t, 1, 0, "initexit")
	r := collectAll(t, p, submit(t, p, "echo:1"))[0]
	if r.Status != StatusWorkerLost || r.Exit.Code != 4 {
		t.Fatalf("task: %v exit %+v", r.Status, r.Exit)
	}
	if r := collectAll(t, p, submit(t, p, "echo:2"))[0]; r.Status != StatusWorkerLost {
		t.Fatalf("later task: %v", r.Status)
	}
	p.Close()
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("workers still started after close")
	}
}

// A worker killed from outside while it initialises is replaced: that is
// not its initializer failing.
func TestKillInInitialisationIsSurvived(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "killed.once")
	p := newTestPool(t, 1, 0, "initkilled:"+marker)
	if r := collectAll(t, p, submit(t, p, "echo:1"))[0]; r.Status != StatusOK {
		t.Fatalf("task: %v exit %+v", r.Status, r.Exit)
	}
	if _, err := os.Stat(marker); err != nil {
		t.Fatal("the first worker was not killed")
	}
}

// Workers killed in their initialisation every time: after maxEarlyDeaths
// tries the tasks fail and no more workers start.
func TestKillsInInitialisationEveryTimeFailThePool(t *testing.T) {
	marker := filepath.Join(t.TempDir(), "killed")
	p := newTestPool(t, 1, 0, "initkilled:"+marker)
	r := collectAll(t, p, submit(t, p, "echo:1"))[0]
	if r.Status != StatusWorkerLost || r.Exit.Signal != syscall.SIGKILL {
		t.Fatalf("task: %v exit %+v", r.Status, r.Exit)
	}
	if got, _ := os.ReadFile(marker); len(got) != maxEarlyDeaths {
		t.Fatalf("%d workers started, want %d", len(got), maxEarlyDeaths)
	}
	p.Close()
	if ok, _ := p.Join(5 * time.Second); !ok {
		t.Fatal("workers still started after close")
	}
}

func TestNotifyJobsGoToCollectNotified(t *testing.T) {
	p := newTestPool(t, 2, 0, "")
	quiet := submit(t, p, "echo:q")
	j, err := p.Submit(JobSpec{Notify: true}, payloads([]string{"echo:x", "echo:y"}), false)
	if err != nil {
		t.Fatal(err)
	}
	collectAll(t, p, quiet)
	got := map[string]bool{}
	done := false
	for deadline := time.Now().Add(5 * time.Second); !done && time.Now().Before(deadline); {
		batches, _ := p.CollectNotified(true, nil, 100*time.Millisecond)
		for _, b := range batches {
			if b.Job != j {
				t.Fatalf("results of job %d, want %d", b.Job, j)
			}
			for _, r := range b.Results {
				got[string(r.Payload)] = true
			}
			done = b.Done
		}
		if len(got) == 2 && !done {
			if err := p.Seal(j); err != nil {
				t.Fatal(err)
			}
		}
	}
	if !done || !got["x"] || !got["y"] {
		t.Fatalf("done %v, results %v", done, got)
	}
	p.CollectNotified(true, nil, 0) // acknowledges the last ones
	if _, _, _, err := p.Collect(j, 0, nil, 0); err != ErrUnknownJob {
		t.Fatalf("a collected notify job is still known: %v", err)
	}
}

// Results lent and not acknowledged are lent again: a caller that fails
// while it handles a batch loses none of it.
func TestUnacknowledgedResultsAreLentAgain(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := submit(t, p, "echo:a", "echo:b", "echo:c")
	var first []Result
	two := func(_ int64, r *Result) bool { return r == nil || r.Index < 2 }
	for len(first) < 2 {
		rs, _, _, err := p.Collect(j, 0, two, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		first = rs
	}
	again, _, _, err := p.Collect(j, 0, nil, time.Second) // nothing handled
	if err != nil || len(again) < 2 || again[0].Index != first[0].Index || again[1].Index != first[1].Index {
		t.Fatalf("lent again: %v %v, first %v", again, err, first)
	}
	if _, _, _, err := p.Collect(j, 1, nil, time.Second); err != nil { // handled a, lent b, c
		t.Fatal(err)
	}
	if _, _, _, err := p.Collect(j, 1, nil, time.Second); err != nil { // the same ack again: a no-op
		t.Fatal(err)
	}
	var rest []Result
	for deadline := time.Now().Add(5 * time.Second); len(rest) < 2 && time.Now().Before(deadline); {
		rest, _, _, _ = p.Collect(j, 1, nil, 100*time.Millisecond)
	}
	if len(rest) != 2 || rest[0].Index != 1 || rest[1].Index != 2 {
		t.Fatalf("after handling the first: %v", rest)
	}
	p.Ack(j, 3)
	if _, _, _, err := p.Collect(j, 0, nil, 0); err != ErrUnknownJob {
		t.Fatalf("an acknowledged job is still known: %v", err)
	}
}

// A job switched to notify after a first result was collected sends the
// rest to CollectNotified, and not that first one again.
func TestNotifyAfterACollect(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := submit(t, p, "echo:a", "sleep:50")
	var first []Result
	for len(first) == 0 {
		first, _, _, _ = p.Collect(j, 0, nil, time.Second)
	}
	if err := p.Notify(j, int64(len(first))); err != nil {
		t.Fatal(err)
	}
	var rest []Result
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		batches, _ := p.CollectNotified(true, nil, 100*time.Millisecond)
		for _, b := range batches {
			rest = append(rest, b.Results...)
			if b.Done {
				deadline = time.Now()
			}
		}
	}
	if len(first)+len(rest) != 2 || rest[len(rest)-1].Index != 1 {
		t.Fatalf("first %v, then %v", first, rest)
	}
}

func TestDiscardDropsResults(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	j := submit(t, p, "sleep:20")
	p.Discard(j)
	if _, _, _, err := p.Collect(j, 0, nil, 0); err != ErrUnknownJob {
		t.Fatalf("collect after discard: %v", err)
	}
	if r := collectAll(t, p, submit(t, p, "echo:ok"))[0]; r.Status != StatusOK {
		t.Fatalf("pool unusable after discard: %v", r.Status)
	}
}

func TestNewRejectsAPoolWithoutWorkers(t *testing.T) {
	if _, err := New(Options{Workers: 0}); err == nil || !strings.Contains(err.Error(), "at least 1") {
		t.Fatalf("New with 0 workers: %v", err)
	}
}

// BenchmarkRoundTrip measures one task through the core and a worker that
// answers at once: the core's share of an apply() round trip.
func BenchmarkRoundTrip(b *testing.B) {
	t := &testing.T{}
	p := newTestPool(t, 1, 0, "")
	defer p.Terminate()
	task := payloads([]string{"echo:x"})
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		j, err := p.Submit(JobSpec{}, task, true)
		if err != nil {
			b.Fatal(err)
		}
		for {
			rs, done, _, err := p.Collect(j, 0, nil, 100*time.Millisecond)
			if err != nil {
				b.Fatal(err)
			}
			if done {
				p.Ack(j, int64(len(rs)))
				break
			}
		}
	}
}

// CancelPending cancels what has not begun (queued, or written ahead and
// revoked) and lets the running task finish.
func TestCancelPendingSparesTheRunningTask(t *testing.T) {
	p := newTestPool(t, 1, 0, "")
	mark := filepath.Join(t.TempDir(), "ran")
	pipelining(p)
	j := submit(t, p, "sleep:300", "mark:"+mark, "echo:queued")
	deadline := time.Now().Add(10 * time.Second)
	for !begun(p) {
		if time.Now().After(deadline) {
			t.Fatal("the first task did not begin")
		}
		time.Sleep(time.Millisecond)
	}
	before := p.Workers()
	if n, err := p.CancelPending(j); err != nil || n != 2 {
		t.Fatalf("cancel pending: %d, %v", n, err)
	}
	got := collectAll(t, p, j)
	if r := got[0]; r.Status != StatusOK {
		t.Fatalf("the running task: %v", r.Status)
	}
	for i := int64(1); i < 3; i++ {
		if got[i].Status != StatusCancelled {
			t.Errorf("task %d: %v", i, got[i].Status)
		}
	}
	if _, err := os.Stat(mark); err == nil {
		t.Fatal("a cancelled task ran")
	}
	if ws := p.Workers(); len(ws) != 1 || ws[0].Pid != before[0].Pid {
		t.Fatalf("workers %+v, before %+v: want the same worker", ws, before)
	}
	if _, err := p.CancelPending(999); err != ErrUnknownJob {
		t.Fatalf("cancel of an unknown job: %v", err)
	}
}

// begun reports whether the pool's worker has begun its first task.
func begun(p *Pool) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for w := range p.workers {
		if len(w.inflight) > 0 && w.ch.Started() >= w.inflight[0].seq {
			return true
		}
	}
	return false
}
