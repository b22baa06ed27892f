package pybind

import "errors"

// Error messages start with a stable prefix that the Python layer maps to
// its exceptions.
var errUnknownID = errors.New("gopool: unknown id")
