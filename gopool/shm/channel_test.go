package shm

import (
	"bytes"
	"math/rand"
	"sync"
	"testing"
	"time"
)

func newTestChannel(t *testing.T, ringSize int) *Channel {
	t.Helper()
	c, err := NewChannel(ringSize)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// Messages of every size, from empty to several times the ring, arrive
// whole and in order, while the writer waits for room and the reader for
// data.
func TestChannelCarriesMessagesOfAnySize(t *testing.T) {
	c := newTestChannel(t, 4096)
	rng := rand.New(rand.NewSource(1))
	sizes := []int{0, 1, 23, 24, 4095, 4096, 4097, 3 * 4096, 100_000}
	for i := 0; i < 300; i++ {
		sizes = append(sizes, rng.Intn(10_000))
	}
	msgs := make([][]byte, len(sizes))
	for i, n := range sizes {
		msgs[i] = make([]byte, n)
		rng.Read(msgs[i])
	}
	errs := make(chan error, 1)
	go func() {
		w := NewMessageWriter(&c.Down)
		for i, m := range msgs {
			if err := w.Write(MessageHeader{Kind: 7, Tag: uint64(i)}, m, 5*time.Second); err != nil {
				errs <- err
				return
			}
		}
		errs <- nil
	}()
	r := NewMessageReader(&c.Down)
	for i, m := range msgs {
		h, payload, err := r.Read(5*time.Second, 0)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if h.Kind != 7 || h.Tag != uint64(i) || h.Length != uint64(len(m)) || !bytes.Equal(payload, m) {
			t.Fatalf("message %d: header %+v, %d bytes, want %d", i, h, len(payload), len(m))
		}
	}
	if err := <-errs; err != nil {
		t.Fatal(err)
	}
	if c.Down.Readable() != 0 {
		t.Fatalf("%d bytes left over", c.Down.Readable())
	}
}

// A message given in parts arrives as their concatenation, and the
// writer leaves the caller's parts as they were (a task may be sent again).
func TestMessageInPartsArrivesWhole(t *testing.T) {
	c := newTestChannel(t, 4096)
	parts := [][]byte{[]byte("head:"), bytes.Repeat([]byte{'x'}, 10_000), {}, []byte(":tail")}
	want := bytes.Join(parts, nil)
	w := NewMessageWriter(&c.Down)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for !w.Start(MessageHeader{Kind: 3, Tag: 1}, parts...) {
			c.Down.WaitSpace(MessageHeaderSize, time.Second, 0)
		}
		for w.Busy() {
			c.Down.WaitSpace(w.Needed(), time.Second, 0)
			w.Continue()
		}
	}()
	h, got, err := NewMessageReader(&c.Down).Read(5*time.Second, 0)
	<-done
	if err != nil || h.Length != uint64(len(want)) || !bytes.Equal(got, want) {
		t.Fatalf("got %d bytes (%v), want %d", len(got), err, len(want))
	}
	if len(parts[1]) != 10_000 || string(parts[0]) != "head:" {
		t.Fatal("the writer changed the caller's parts")
	}
}

func TestChannelReaderRejectsACorruptHeader(t *testing.T) {
	c := newTestChannel(t, 4096)
	bad := make([]byte, MessageHeaderSize)
	bad[20] = 1 // the reserved word must be zero
	if c.Down.Write(bad) != len(bad) {
		t.Fatal("short write")
	}
	if _, _, _, err := NewMessageReader(&c.Down).Next(); err != ErrChannelCorrupt {
		t.Fatalf("corrupt header: %v", err)
	}
}

func TestMessageReaderBoundsTheLength(t *testing.T) {
	c := newTestChannel(t, 4096)
	if !NewMessageWriter(&c.Down).Start(MessageHeader{Kind: 1}, make([]byte, 100)) {
		t.Fatal("no room")
	}
	r := NewMessageReader(&c.Down)
	r.MaxLength = 99
	if _, _, _, err := r.Next(); err != ErrChannelCorrupt {
		t.Fatalf("overlong message: %v", err)
	}
}

// A writer does not start a message when its header does not fit.
func TestWriterStartsOnlyWithRoomForTheHeader(t *testing.T) {
	c := newTestChannel(t, 4096)
	w := NewMessageWriter(&c.Down)
	if !w.Start(MessageHeader{Kind: 1}, make([]byte, 4096-MessageHeaderSize-10)) || w.Busy() {
		t.Fatal("first message did not fit")
	}
	if w.Start(MessageHeader{Kind: 1}, nil) {
		t.Fatal("started a message with 10 bytes free")
	}
	if c.Down.Free() != 10 {
		t.Fatalf("free %d, want 10", c.Down.Free())
	}
}

// Revoke and Begin: whatever the interleaving, a task is either skipped by
// the peer (Revoke reported true) or begun (Revoke reported false), never
// both and never neither.
func TestRevokeAndBeginAgree(t *testing.T) {
	c := newTestChannel(t, 4096)
	for seq := uint64(1); seq <= 2000; seq++ {
		var revoked, begun bool
		var wg sync.WaitGroup
		wg.Add(2)
		go func() { defer wg.Done(); revoked = c.Revoke(seq) }()
		go func() { defer wg.Done(); begun = c.Begin(seq); c.End() }()
		wg.Wait()
		if revoked == begun {
			t.Fatalf("task %d: revoked %v, begun %v", seq, revoked, begun)
		}
		if c.revokedBits() != 0 {
			t.Fatalf("task %d: revoked bits left: %b", seq, c.revokedBits())
		}
	}
}

// A bit revoked for a task the peer began never catches a later task.
func TestRevokeOfABegunTaskLeavesNoMark(t *testing.T) {
	c := newTestChannel(t, 4096)
	if !c.Begin(3) {
		t.Fatal("task 3 skipped")
	}
	if c.Running() != 3 || c.Started() != 3 {
		t.Fatalf("running %d, started %d", c.Running(), c.Started())
	}
	if c.Revoke(3) {
		t.Fatal("revoked a task that began")
	}
	c.End()
	if !c.Begin(67) { // 67 % 64 == 3
		t.Fatal("task 67 skipped")
	}
}

func (c *Channel) revokedBits() uint64 { return *c.revoked }

// A sleeper on the doorbell wakes when it rings, promptly: a ring that
// woke nobody would leave it asleep for its whole timeout.
func TestDoorbellWakesASleeper(t *testing.T) {
	b, err := NewDoorbell()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	for i := 0; i < 20; i++ {
		seen := b.Count()
		asleep := make(chan struct{})
		woke := make(chan time.Time)
		go func() {
			close(asleep)
			b.Wait(seen, 10*time.Second, 0)
			woke <- time.Now()
		}()
		<-asleep
		time.Sleep(2 * time.Millisecond) // let it reach the futex; a ring before that is fine too
		rang := time.Now()
		b.Ring()
		if d := (<-woke).Sub(rang); d > time.Second {
			t.Fatalf("woke %v after the ring", d)
		}
	}
}

func TestOpenChannelChecksTheFile(t *testing.T) {
	c := newTestChannel(t, 8192)
	peer, err := OpenChannel(int(c.File().Fd()))
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	if peer.RingSize() != 8192 {
		t.Fatalf("ring size %d", peer.RingSize())
	}
	if !NewMessageWriter(&peer.Up).Start(MessageHeader{Kind: 5, Tag: 9}, []byte("hi")) {
		t.Fatal("no room")
	}
	h, payload, ok, err := NewMessageReader(&c.Up).Next()
	if !ok || err != nil || h.Tag != 9 || string(payload) != "hi" {
		t.Fatalf("got %+v %q %v %v", h, payload, ok, err)
	}
	b, err := NewDoorbell()
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if _, err := OpenChannel(int(b.File().Fd())); err == nil {
		t.Fatal("a doorbell opened as a channel")
	}
	if _, err := OpenDoorbell(int(c.File().Fd())); err == nil {
		t.Fatal("a channel opened as a doorbell")
	}
}
