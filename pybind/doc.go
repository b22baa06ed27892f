// Package pybind is the flat API that gopy binds into gopool._gobind, and
// the only Go code that knows how Python sees the core.
//
// It is mechanical on purpose: objects are integer ids in registries;
// every function returns (T, error), and an error crosses as
// "E<code>: <text>" with a code from errors.go, which Python maps to an
// exception from one table (gopool._binding). Data crosses through shared
// buffers (buffer.go), memory files both sides map, in the layouts of
// wire.go; []byte arguments are used only where a call is rare (starting a
// pool or a process). Blocking calls take a timeout in milliseconds that
// callers keep short (≤ 100 ms), so that Python can handle signals between
// calls.
package pybind
