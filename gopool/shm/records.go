package shm

import (
	"encoding/binary"
	"errors"
)

// Records are how a batch of items is laid out in one buffer: each item is
// [8-byte little-endian length][bytes]. GetBatch writes its items so.
const recordHeader = 8

// SplitRecords splits a buffer of records. The items share the buffer's
// memory.
func SplitRecords(blob []byte) ([][]byte, error) {
	var out [][]byte
	for len(blob) > 0 {
		if len(blob) < recordHeader {
			return nil, errors.New("truncated record header")
		}
		n := binary.LittleEndian.Uint64(blob[:recordHeader])
		blob = blob[recordHeader:]
		if n > uint64(len(blob)) {
			return nil, errors.New("truncated record")
		}
		out = append(out, blob[:n:n])
		blob = blob[n:]
	}
	return out, nil
}
