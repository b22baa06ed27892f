package pybind

import (
	"sync"
	"time"
)

// registry maps the integer ids Python holds to the core's objects.
type registry[T any] struct {
	mu    sync.Mutex
	last  int64
	items map[int64]T
}

func newRegistry[T any]() *registry[T] { return &registry[T]{items: map[int64]T{}} }

func (r *registry[T]) add(v T) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last++
	r.items[r.last] = v
	return r.last
}

func (r *registry[T]) get(id int64) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.items[id]
	if !ok {
		return v, errUnknownID
	}
	return v, nil
}

// take removes an id and returns its object.
func (r *registry[T]) take(id int64) (T, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	v, ok := r.items[id]
	if !ok {
		return v, errUnknownID
	}
	delete(r.items, id)
	return v, nil
}

func millis(ms int) time.Duration { return time.Duration(ms) * time.Millisecond }
