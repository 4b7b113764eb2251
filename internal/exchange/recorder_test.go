package exchange_test

import (
	"errors"
	"os"
	"testing"

	"github.com/krait-server/krait/internal/exchange"
)

// sendBase is a fullBase whose SendFile reports count bytes sent.
type sendBase struct{ fullBase }

func (*sendBase) SendFile(_ *os.File, _, count int64) (int64, error) { return count, nil }

func TestRecorderStatusAndBytes(t *testing.T) {
	var rec exchange.Recorder
	rec.Reset(&sendBase{})
	if err := rec.WriteHeader(100, nil, nil, -1); err != nil {
		t.Fatal(err)
	}
	if rec.Status != 0 {
		t.Fatalf("an interim 100 recorded as status %d, want 0", rec.Status)
	}
	_ = rec.WriteHeader(404, nil, nil, 9)
	_, _ = rec.Write([]byte("not "))
	_, _ = rec.SendFile(nil, 3, 5)
	if rec.Status != 404 || rec.Bytes != 9 {
		t.Fatalf("status %d, bytes %d; want 404, 9", rec.Status, rec.Bytes)
	}
	if err := rec.WriteTrailers(nil); err != nil || rec.Status != 404 {
		t.Fatalf("trailers after a header: err %v, status %d; want nil, 404", err, rec.Status)
	}
	rec.Reset(&fullBase{})
	if rec.Status != 0 || rec.Bytes != 0 {
		t.Fatalf("Reset left status %d, bytes %d", rec.Status, rec.Bytes)
	}
	if err := rec.WriteTrailers(nil); err != nil || rec.Status != 200 {
		t.Fatalf("trailers first: err %v, status %d; want nil, 200 (the engine's implicit header)", err, rec.Status)
	}
}

func TestRecorderHijackForwardsThroughTheChain(t *testing.T) {
	full := &fullBase{}
	rec := &exchange.Recorder{}
	rec.Reset(passThrough{full})
	if !exchange.CanHijack(rec) || !exchange.CanWriteTrailers(rec) {
		t.Fatal("the recorder hides what the engine's writer can do")
	}
	if _, _, err := exchange.Hijack(rec); err != nil || full.hijacked != 1 || rec.Status != 101 {
		t.Fatalf("hijack: err %v, base hijacked %d times, status %d; want nil, 1, 101", err, full.hijacked, rec.Status)
	}
	_ = exchange.WriteTrailers(rec, nil)
	if full.trailers != 1 {
		t.Fatalf("trailers reached the base %d times, want 1", full.trailers)
	}

	rec.Reset(&base{})
	if exchange.CanHijack(rec) || exchange.CanWriteTrailers(rec) {
		t.Fatal("the recorder claims capabilities its base lacks")
	}
	if _, _, err := rec.Hijack(); !errors.Is(err, exchange.ErrNotSupported) || rec.Status != 0 {
		t.Fatalf("hijack on a plain base: err %v, status %d; want ErrNotSupported, 0", err, rec.Status)
	}
	if err := rec.WriteTrailers(nil); !errors.Is(err, exchange.ErrNotSupported) || rec.Status != 0 {
		t.Fatalf("trailers on a plain base: err %v, status %d; want ErrNotSupported, 0", err, rec.Status)
	}
}

func TestRecorderNoAllocs(t *testing.T) {
	var rec exchange.Recorder
	w := &sendBase{}
	body := []byte("hello")
	if n := testing.AllocsPerRun(200, func() {
		rec.Reset(w)
		_ = rec.WriteHeader(200, nil, nil, 5)
		_, _ = rec.Write(body)
		_ = exchange.WriteTrailers(&rec, nil)
		rec.Reset(nil)
	}); n != 0 {
		t.Fatalf("%v allocations per exchange, want 0", n)
	}
}
