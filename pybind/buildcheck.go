// Package pybind is the flat API that gopy binds into gopool._gobind.
package pybind

// BuildCheck returns 42. It proves that the extension was built and loads;
// the build and the tests call it.
func BuildCheck() int { return 42 }

// EchoBytes returns a copy of b. It exists to measure and test how []byte
// crosses the binding (see python/gopool/_native.py).
func EchoBytes(b []byte) ([]byte, error) {
	out := make([]byte, len(b))
	copy(out, b)
	return out, nil
}
