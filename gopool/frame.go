package gopool

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The wire between the core and a worker is a stream of frames:
//
//	[8 bytes little-endian payload length][1 byte kind][8 bytes tag][payload]
//
// The core writes kindInit once, then one kindTask per task; a worker answers
// each task with one result frame whose kind is the task's status (StatusOK or
// StatusError, chosen by the worker) and whose tag echoes the task's tag.
// A worker whose initialisation fails sends kindInitFailed instead and exits.
const (
	frameHeaderSize = 17

	kindInit       = 0x20
	kindTask       = 0x21
	kindInitFailed = 0x30
	// kindRetiring: the worker will run nothing more (e.g. it went over its
	// memory limit) and exits; tasks already written to it never started.
	kindRetiring = 0x31
)

// maxFramePayload bounds what a peer may announce, so that a corrupt length
// becomes an error instead of an attempt to allocate the machine.
const maxFramePayload = 1 << 40

type frame struct {
	kind    byte
	tag     uint64
	payload []byte
}

// encodeFrame returns the frame as one buffer so that it goes out in a single
// write: a result frame must never be interleaved with anything else.
func encodeFrame(kind byte, tag uint64, payload []byte) []byte {
	buf := make([]byte, frameHeaderSize+len(payload))
	binary.LittleEndian.PutUint64(buf[0:8], uint64(len(payload)))
	buf[8] = kind
	binary.LittleEndian.PutUint64(buf[9:17], tag)
	copy(buf[frameHeaderSize:], payload)
	return buf
}

func writeFrame(w io.Writer, kind byte, tag uint64, payload []byte) error {
	_, err := w.Write(encodeFrame(kind, tag, payload))
	return err
}

// readFrame reads one whole frame. io.EOF means the peer closed the stream
// cleanly between frames; io.ErrUnexpectedEOF means it died in the middle of one.
func readFrame(r *bufio.Reader) (frame, error) {
	var hdr [frameHeaderSize]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return frame{}, err
	}
	n := binary.LittleEndian.Uint64(hdr[0:8])
	if n > maxFramePayload {
		return frame{}, fmt.Errorf("corrupt frame: payload length %d", n)
	}
	f := frame{kind: hdr[8], tag: binary.LittleEndian.Uint64(hdr[9:17])}
	f.payload = make([]byte, n)
	if _, err := io.ReadFull(r, f.payload); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return frame{}, err
	}
	return f, nil
}

// SplitRecords splits a blob of [8-byte length][bytes] records, the form in
// which a batch of task payloads crosses from the binding into the core.
func SplitRecords(blob []byte) ([][]byte, error) {
	var out [][]byte
	for len(blob) > 0 {
		if len(blob) < 8 {
			return nil, errors.New("truncated record header")
		}
		n := binary.LittleEndian.Uint64(blob[:8])
		blob = blob[8:]
		if n > uint64(len(blob)) {
			return nil, errors.New("truncated record")
		}
		out = append(out, blob[:n:n])
		blob = blob[n:]
	}
	return out, nil
}
