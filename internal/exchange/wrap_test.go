package exchange_test

import (
	"bufio"
	"errors"
	"net"
	"os"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

// base is an engine writer; hijack and trailers say what it supports.
type base struct{ hijacked, trailers int }

func (*base) WriteHeader(int, []byte, []exchange.Header, int64) error { return nil }
func (*base) Write(p []byte) (int, error)                             { return len(p), nil }
func (*base) SendFile(*os.File, int64, int64) (int64, error)          { return 0, nil }
func (*base) Flush() error                                            { return nil }
func (*base) Abort()                                                  {}

type fullBase struct{ base }

func (b *fullBase) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	b.hijacked++
	return nil, nil, nil
}

func (b *fullBase) WriteTrailers([]exchange.Header) error { b.trailers++; return nil }

// passThrough wraps without intercepting anything.
type passThrough struct{ exchange.ResponseWriter }

func (p passThrough) Unwrap() exchange.ResponseWriter { return p.ResponseWriter }

// observer intercepts both optional interfaces, forwarding with the helpers.
type observer struct {
	exchange.ResponseWriter
	saw int
}

func (o *observer) Unwrap() exchange.ResponseWriter { return o.ResponseWriter }
func (o *observer) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	o.saw++
	return exchange.Hijack(o.ResponseWriter)
}
func (o *observer) WriteTrailers(f []exchange.Header) error {
	o.saw++
	return exchange.WriteTrailers(o.ResponseWriter, f)
}

var (
	_ exchange.Unwrapper     = passThrough{}
	_ exchange.Hijacker      = (*observer)(nil)
	_ exchange.TrailerWriter = (*observer)(nil)
)

func TestHelpersWalkTheChain(t *testing.T) {
	full := &fullBase{}
	obs := &observer{ResponseWriter: passThrough{full}}
	w := passThrough{obs}
	if !exchange.CanHijack(w) || !exchange.CanWriteTrailers(w) {
		t.Fatal("the capabilities of the base writer are hidden by its wrappers")
	}
	if _, _, err := exchange.Hijack(w); err != nil {
		t.Fatal(err)
	}
	if err := exchange.WriteTrailers(w, nil); err != nil {
		t.Fatal(err)
	}
	if full.hijacked != 1 || full.trailers != 1 || obs.saw != 2 {
		t.Errorf("base hijacked %d, trailers %d, observer saw %d; want 1, 1, 2", full.hijacked, full.trailers, obs.saw)
	}
	if exchange.Base(w) != exchange.ResponseWriter(full) {
		t.Errorf("Base is %T", exchange.Base(w))
	}
}

func TestHelpersWithoutSupport(t *testing.T) {
	// An intercepting wrapper does not make its base capable.
	w := &observer{ResponseWriter: passThrough{&base{}}}
	if exchange.CanHijack(w) || exchange.CanWriteTrailers(w) {
		t.Fatal("an observer around a plain writer claims its capabilities")
	}
	if _, _, err := exchange.Hijack(w); !errors.Is(err, exchange.ErrNotSupported) {
		t.Errorf("Hijack: %v, want ErrNotSupported", err)
	}
	if err := exchange.WriteTrailers(w, nil); !errors.Is(err, exchange.ErrNotSupported) {
		t.Errorf("WriteTrailers: %v, want ErrNotSupported", err)
	}
	if err := exchange.WriteTrailers(passThrough{nil}, nil); !errors.Is(err, exchange.ErrNotSupported) {
		t.Errorf("a wrapper of nothing: %v", err)
	}
}
