package exchange

import (
	"bufio"
	"errors"
	"net"
)

// ErrNotSupported is returned by Hijack and WriteTrailers when no writer in
// the chain supports the operation.
var ErrNotSupported = errors.New("exchange: operation not supported by this ResponseWriter")

// Unwrapper is implemented by a ResponseWriter that wraps another one
// (access log, and later metrics, compression, ...). Every wrapper must
// implement it, so that the optional interfaces of the writer it wraps
// (Hijacker, TrailerWriter) stay reachable through the helpers below: a
// plain type assertion on a wrapper would hide them.
type Unwrapper interface {
	// Unwrap returns the wrapped ResponseWriter.
	Unwrap() ResponseWriter
}

// The convention, in the spirit of net/http's ResponseController:
//
//   - Callers never type-assert optional interfaces; they call Hijack,
//     WriteTrailers, CanHijack and CanWriteTrailers.
//   - A wrapper that only passes things through implements Unwrap and
//     nothing else.
//   - A wrapper that needs to see an optional operation (the access log
//     records 101 on Hijack) implements that interface AND Unwrap, and
//     forwards with the helper on its Unwrap(), never on a type assertion.
//     Such a wrapper intercepts; it does not decide whether the operation
//     is supported: CanHijack and CanWriteTrailers look through it.
//   - A writer without Unwrap is a base writer (the engine's): whether it
//     implements the interface is the answer.

// Hijack hijacks the connection of w: it calls Hijack on the first writer
// in w's Unwrap chain that implements Hijacker, and returns ErrNotSupported
// when none does.
func Hijack(w ResponseWriter) (net.Conn, *bufio.ReadWriter, error) {
	for w != nil {
		if h, ok := w.(Hijacker); ok {
			return h.Hijack()
		}
		u, ok := w.(Unwrapper)
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return nil, nil, ErrNotSupported
}

// WriteTrailers ends the body of w with trailer fields: it calls
// WriteTrailers on the first writer in w's Unwrap chain that implements
// TrailerWriter, and returns ErrNotSupported when none does (the caller
// then drops the trailers).
func WriteTrailers(w ResponseWriter, fields []Header) error {
	for w != nil {
		if t, ok := w.(TrailerWriter); ok {
			return t.WriteTrailers(fields)
		}
		u, ok := w.(Unwrapper)
		if !ok {
			break
		}
		w = u.Unwrap()
	}
	return ErrNotSupported
}

// CanHijack reports whether Hijack(w) can succeed in principle: whether the
// base writer of w's Unwrap chain implements Hijacker. Intercepting
// wrappers are looked through: they implement Hijacker whatever they wrap.
func CanHijack(w ResponseWriter) bool {
	_, ok := Base(w).(Hijacker)
	return ok
}

// CanWriteTrailers reports whether the base writer of w's Unwrap chain
// implements TrailerWriter.
func CanWriteTrailers(w ResponseWriter) bool {
	_, ok := Base(w).(TrailerWriter)
	return ok
}

// Base returns the innermost writer of w's Unwrap chain: the first one
// that does not implement Unwrapper (w itself when it wraps nothing).
func Base(w ResponseWriter) ResponseWriter {
	for {
		u, ok := w.(Unwrapper)
		if !ok {
			return w
		}
		inner := u.Unwrap()
		if inner == nil {
			return w
		}
		w = inner
	}
}
