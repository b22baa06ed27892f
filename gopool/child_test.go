package gopool

import (
	"encoding/binary"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// With GOPOOL_TEST_CHILD set, the test binary plays a Child: it reads its
// init message from fd 3 and acts on it:
//
//	exit:N     exit with code N
//	wait       wait until fd 3 ends (the parent released it), then exit 0
//	echo:TEXT  write TEXT to the file named by GOPOOL_TEST_CHILD_OUT, exit 0
func testChild() int {
	init := os.NewFile(3, "init")
	var n [8]byte
	if _, err := io.ReadFull(init, n[:]); err != nil {
		return 30
	}
	payload := make([]byte, binary.LittleEndian.Uint64(n[:]))
	if _, err := io.ReadFull(init, payload); err != nil {
		return 31
	}
	cmd, arg, _ := strings.Cut(string(payload), ":")
	switch cmd {
	case "exit":
		code, _ := strconv.Atoi(arg)
		return code
	case "wait":
		_, _ = io.Copy(io.Discard, init)
		return 0
	case "echo":
		if os.WriteFile(os.Getenv("GOPOOL_TEST_CHILD_OUT"), []byte(arg), 0o600) != nil {
			return 32
		}
		return 0
	}
	return 33
}

func startTestChild(t *testing.T, init string, env ...string) *Child {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	c, err := StartChild(WorkerSpec{Argv: []string{exe}, Env: append(os.Environ(), append(env, "GOPOOL_TEST_CHILD=1")...), Init: []byte(init)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		c.proc.signal(syscall.SIGKILL)
		c.Wait(5 * time.Second)
		c.Release()
	})
	return c
}

func TestChildExitCodeAndSentinel(t *testing.T) {
	c := startTestChild(t, "exit:3")
	fds := []unix.PollFd{{Fd: int32(c.Sentinel()), Events: unix.POLLIN}}
	if n, err := unix.Poll(fds, 10_000); n != 1 || err != nil {
		t.Fatalf("the sentinel did not become readable: %d, %v", n, err)
	}
	exit, ok := c.Wait(5 * time.Second)
	if !ok || exit.Code != 3 || exit.Signal != 0 {
		t.Fatalf("exit %+v, ok %v", exit, ok)
	}
}

func TestChildGetsItsInitMessageAndIsSignalled(t *testing.T) {
	out := t.TempDir() + "/out"
	c := startTestChild(t, "echo:hello", "GOPOOL_TEST_CHILD_OUT="+out)
	if exit, ok := c.Wait(10 * time.Second); !ok || exit.Code != 0 {
		t.Fatalf("exit %+v, ok %v", exit, ok)
	}
	if got, _ := os.ReadFile(out); string(got) != "hello" {
		t.Fatalf("the child wrote %q", got)
	}
	w := startTestChild(t, "wait")
	if _, ok := w.Wait(50 * time.Millisecond); ok {
		t.Fatal("a waiting child exited")
	}
	if err := w.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if exit, ok := w.Wait(10 * time.Second); !ok || exit.Signal != syscall.SIGTERM {
		t.Fatalf("after SIGTERM: %+v, ok %v", exit, ok)
	}
	if err := w.Signal(syscall.SIGKILL); err != nil { // after its end: nothing happens
		t.Fatal(err)
	}
}

// Release closes the core's end of fd 3: a child watching it learns that
// its parent is gone.
func TestChildSeesItsParentLetGo(t *testing.T) {
	c := startTestChild(t, "wait")
	c.Release()
	if exit, ok := c.Wait(10 * time.Second); !ok || exit.Code != 0 {
		t.Fatalf("exit %+v, ok %v", exit, ok)
	}
}
