package pybind

import (
	"bytes"
	"encoding/binary"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/gopool/gopool/gopool"
	"github.com/gopool/gopool/gopool/shm"
)

// The constants shared with Python and with the worker's C code have one
// home, in Go; python/gopool/_wire.py and python/gopool/_wire.h are
// generated from the table below, and this test fails when they are not
// what it would generate. Regenerate with
//
//	go test ./pybind -run TestWireFiles -update

var update = flag.Bool("update", false, "rewrite the generated wire files")

type wireConst struct {
	name  string // Go name; Python and C names are derived from it
	value any    // an integer or a string
	c     bool   // also in _wire.h
}

func wireConsts() []wireConst {
	return []wireConst{
		// Messages between the core and a worker (gopool/protocol.go).
		{"MsgInit", gopool.MsgInit, true},
		{"MsgTask", gopool.MsgTask, true},
		{"MsgStop", gopool.MsgStop, true},
		{"MsgResultOK", gopool.MsgResultOK, true},
		{"MsgResultError", gopool.MsgResultError, true},
		{"MsgInitFailed", gopool.MsgInitFailed, true},
		{"MsgRetiring", gopool.MsgRetiring, true},
		{"MsgSkipped", gopool.MsgSkipped, true},
		{"PhaseInitializing", gopool.PhaseInitializing, true},
		{"PhaseReady", gopool.PhaseReady, true},
		{"ChannelFd", gopool.ChannelFd, true},
		{"DoorbellFd", gopool.DoorbellFd, true},
		{"FirstInheritedFd", gopool.FirstInheritedFd, true},
		// Task outcomes (gopool/job.go).
		{"StatusOK", int(gopool.StatusOK), false},
		{"StatusError", int(gopool.StatusError), false},
		{"StatusWorkerLost", int(gopool.StatusWorkerLost), false},
		{"StatusTerminated", int(gopool.StatusTerminated), false},
		{"StatusInitFailed", int(gopool.StatusInitFailed), false},
		{"StatusBroken", int(gopool.StatusBroken), false},
		{"StatusCancelled", int(gopool.StatusCancelled), false},
		{"StatusTimedOut", int(gopool.StatusTimedOut), false},
		// The channel's memory file (gopool/shm/channel.go, doorbell.go).
		{"ChannelMagic", uint64(shm.ChannelMagic), true},
		{"ChannelVersion", shm.ChannelVersion, true},
		{"ChannelHeaderSize", shm.ChannelHeaderSize, true},
		{"ChanOffMagic", shm.ChanOffMagic, true},
		{"ChanOffVersion", shm.ChanOffVersion, true},
		{"ChanOffRingSize", shm.ChanOffRingSize, true},
		{"ChanOffDownTail", shm.ChanOffDownTail, true},
		{"ChanOffDownDataWaiters", shm.ChanOffDownDataWaiters, true},
		{"ChanOffDownHead", shm.ChanOffDownHead, true},
		{"ChanOffDownSpaceWaiters", shm.ChanOffDownSpaceWaiters, true},
		{"ChanOffUpTail", shm.ChanOffUpTail, true},
		{"ChanOffUpDataWaiters", shm.ChanOffUpDataWaiters, true},
		{"ChanOffUpHead", shm.ChanOffUpHead, true},
		{"ChanOffUpSpaceWaiters", shm.ChanOffUpSpaceWaiters, true},
		{"ChanOffStarted", shm.ChanOffStarted, true},
		{"ChanOffRunning", shm.ChanOffRunning, true},
		{"ChanOffRevoked", shm.ChanOffRevoked, true},
		{"ChanOffPhase", shm.ChanOffPhase, true},
		{"ChanOffSoftLimit", shm.ChanOffSoftLimit, true},
		{"SoftLimitSignal", int(gopool.SoftLimitSignal), true},
		{"MessageHeaderSize", shm.MessageHeaderSize, true},
		{"DoorbellMagic", uint64(shm.DoorbellMagic), true},
		{"DoorbellSize", shm.DoorbellSize, true},
		{"BellOffMagic", shm.BellOffMagic, true},
		{"BellOffCount", shm.BellOffCount, true},
		{"BellOffSleepers", shm.BellOffSleepers, true},
		{"BellOffSpin", shm.BellOffSpin, true},
		// The binding (pybind).
		{"CodeInternal", CodeInternal, false},
		{"CodeReleased", CodeReleased, false},
		{"CodeUnknownJob", CodeUnknownJob, false},
		{"CodeCannotStart", CodeCannotStart, false},
		{"CodeOS", CodeOS, false},
		{"CodeBadArgument", CodeBadArgument, false},
		{"CodeItemTooLarge", CodeItemTooLarge, false},
		{"CodeRingFull", CodeRingFull, false},
		{"CodeTaskDone", CodeTaskDone, false},
		{"CodeJobSealed", CodeJobSealed, false},
		{"CodeLockBusy", CodeLockBusy, false},
		{"CodeReleasedTooMany", CodeReleasedTooMany, false},
		{"CodeTooManyWaiters", CodeTooManyWaiters, false},
		{"SubmitSeal", SubmitSeal, false},
		{"SubmitNotify", SubmitNotify, false},
		{"ReplyDone", ReplyDone, false},
		{"ReplyHeaderFormat", ReplyHeaderFormat, false},
		{"ResultHeaderFormat", ResultHeaderFormat, false},
		{"JobHeaderFormat", JobHeaderFormat, false},
		{"WorkerRecordFormat", WorkerRecordFormat, false},
		{"RecordHeaderFormat", RecordHeaderFormat, false},
		{"ChildStillRunning", ChildStillRunning, false},
		// Locks, semaphores, conditions, barriers (pybind/sync.go).
		{"LockTimedOut", LockTimedOut, false},
		{"LockAcquired", LockAcquired, false},
		{"LockRecovered", LockRecovered, false},
		{"BarrierPassed", BarrierPassed, false},
		{"BarrierPending", BarrierPending, false},
		{"BarrierBroken", BarrierBroken, false},
		{"SemaphoreValueMax", shm.SemaphoreValueMax, false},
		{"CondMaxWaiters", shm.CondMaxWaiters, false},
	}
}

var wordBoundary = regexp.MustCompile(`([a-z0-9])([A-Z])|([A-Z]+)([A-Z][a-z])`)

// snake turns a Go name into UPPER_SNAKE_CASE: MsgResultOK → MSG_RESULT_OK.
func snake(name string) string {
	s := wordBoundary.ReplaceAllString(name, "${1}${3}_${2}${4}")
	return strings.ToUpper(s)
}

const generatedNote = "Generated from the Go constants by pybind/wire_test.go: do not edit.\n" +
	"Regenerate with: go test ./pybind -run TestWireFiles -update"

func renderPython(consts []wireConst) string {
	var b strings.Builder
	fmt.Fprintf(&b, "\"\"\"Constants shared with the Go core and the worker's C code.\n\n%s\n\"\"\"\n\n", generatedNote)
	for _, c := range consts {
		switch v := c.value.(type) {
		case string:
			fmt.Fprintf(&b, "%s = %q\n", snake(c.name), v)
		case uint64:
			fmt.Fprintf(&b, "%s = 0x%x\n", snake(c.name), v)
		default:
			fmt.Fprintf(&b, "%s = %d\n", snake(c.name), v)
		}
	}
	return b.String()
}

func renderC(consts []wireConst) string {
	var b strings.Builder
	fmt.Fprintf(&b, "/* Constants shared with the Go core.\n * %s\n */\n",
		strings.ReplaceAll(generatedNote, "\n", "\n * "))
	b.WriteString("#ifndef GOPOOL_WIRE_H\n#define GOPOOL_WIRE_H\n\n")
	for _, c := range consts {
		if !c.c {
			continue
		}
		switch v := c.value.(type) {
		case uint64:
			fmt.Fprintf(&b, "#define GOPOOL_%s 0x%xULL\n", snake(c.name), v)
		default:
			fmt.Fprintf(&b, "#define GOPOOL_%s %d\n", snake(c.name), v)
		}
	}
	b.WriteString("\n#endif\n")
	return b.String()
}

func TestWireFiles(t *testing.T) {
	consts := wireConsts()
	for _, f := range []struct{ path, want string }{
		{"../python/gopool/_wire.py", renderPython(consts)},
		{"../python/gopool/_wire.h", renderC(consts)},
	} {
		if *update {
			if err := os.WriteFile(f.path, []byte(f.want), 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != f.want {
			t.Errorf("%s is not what the Go constants generate; run: go test ./pybind -run TestWireFiles -update", filepath.Base(f.path))
		}
	}
}

func TestSnake(t *testing.T) {
	for in, want := range map[string]string{
		"MsgResultOK": "MSG_RESULT_OK", "ChanOffDownTail": "CHAN_OFF_DOWN_TAIL", "CodeOS": "CODE_OS",
		"StatusOK": "STATUS_OK", "FirstInheritedFd": "FIRST_INHERITED_FD", "ReplyHeaderFormat": "REPLY_HEADER_FORMAT",
	} {
		if got := snake(in); got != want {
			t.Errorf("snake(%q) = %q, want %q", in, got, want)
		}
	}
}

// structSize is the size of a little-endian struct format of q, Q, i, I.
func structSize(t *testing.T, format string) int {
	n := 0
	for _, c := range strings.TrimPrefix(format, "<") {
		switch c {
		case 'q', 'Q':
			n += 8
		case 'i', 'I':
			n += 4
		default:
			t.Fatalf("format %q: unexpected %q", format, c)
		}
	}
	return n
}

func TestFormatsMatchTheEncoders(t *testing.T) {
	for _, f := range []struct {
		format string
		size   int
	}{
		{ReplyHeaderFormat, replyHeaderSize},
		{ResultHeaderFormat, resultHeaderSize},
		{JobHeaderFormat, jobHeaderSize},
		{WorkerRecordFormat, workerRecordSize},
	} {
		if got := structSize(t, f.format); got != f.size {
			t.Errorf("%q is %d bytes, the encoder writes %d", f.format, got, f.size)
		}
	}
}

// A result record decodes field by field as ResultHeaderFormat says.
func TestResultRecordLayout(t *testing.T) {
	r := gopool.Result{Index: 7, Status: gopool.StatusWorkerLost, Pid: 1234,
		Exit: gopool.ExitStatus{Code: -1, Signal: 9}, Payload: []byte("xyz")}
	buf := make([]byte, resultSize(&r))
	if n := putResult(buf, &r); n != len(buf) {
		t.Fatalf("wrote %d of %d bytes", n, len(buf))
	}
	le := binary.LittleEndian
	if int64(le.Uint64(buf)) != 7 || le.Uint32(buf[8:]) != uint32(gopool.StatusWorkerLost) ||
		int32(le.Uint32(buf[12:])) != 1234 || int32(le.Uint32(buf[16:])) != -1 ||
		int32(le.Uint32(buf[20:])) != 9 || le.Uint64(buf[24:]) != 3 || !bytes.Equal(buf[32:], []byte("xyz")) {
		t.Fatalf("record %v", buf)
	}
}

func TestSplitTasksCopiesOutOfTheBuffer(t *testing.T) {
	buf := binary.LittleEndian.AppendUint64(nil, 2)
	buf = append(buf, "hi"...)
	buf = binary.LittleEndian.AppendUint64(buf, 0)
	tasks, err := splitTasks(buf, int64(len(buf)))
	if err != nil || len(tasks) != 2 || string(tasks[0][0]) != "hi" || len(tasks[1][0]) != 0 {
		t.Fatalf("got %q, %v", tasks, err)
	}
	buf[8] = 'X'
	if string(tasks[0][0]) != "hi" {
		t.Fatal("the task shares the buffer's memory")
	}
	if _, err := splitTasks(buf, int64(len(buf))+1); codeOf(err) != CodeBadArgument {
		t.Fatalf("records beyond the buffer: %v", err)
	}
	if _, err := splitTasks(buf[:5], 5); codeOf(err) != CodeBadArgument {
		t.Fatalf("a truncated record: %v", err)
	}
}

func TestErrorsCarryTheirCodes(t *testing.T) {
	for err, want := range map[error]int{
		errUnknownID:                                   CodeReleased,
		gopool.ErrUnknownJob:                           CodeUnknownJob,
		shm.ErrRingFull:                                CodeRingFull,
		shm.ErrItemTooLarge:                            CodeItemTooLarge,
		shm.ErrTaskDone:                                CodeTaskDone,
		shm.ErrLockBusy:                                CodeLockBusy,
		shm.ErrReleasedTooMany:                         CodeReleasedTooMany,
		shm.ErrTooManyWaiters:                          CodeTooManyWaiters,
		&gopool.ErrCannotStart{}:                       CodeCannotStart,
		os.NewSyscallError("mmap", os.ErrInvalid):      CodeOS,
		fmt.Errorf("wrapped: %w", gopool.ErrJobSealed): CodeJobSealed,
		errBadArgument("bad"):                          CodeBadArgument,
		fmt.Errorf("anything else"):                    CodeInternal,
	} {
		if got := coded(err).Error(); !strings.HasPrefix(got, fmt.Sprintf("E%d: ", want)) {
			t.Errorf("%v: %q, want code %d", err, got, want)
		}
	}
	if coded(nil) != nil {
		t.Error("coded(nil) is not nil")
	}
}
