package worker

import (
	"errors"
	"testing"

	"github.com/krait-server/krait/internal/wire"
)

// helloPayload is a ready HELLO tuple, with extra appended as its 8th
// item when non-nil.
func helloPayload(extra func([]byte) []byte) []byte {
	n := 7
	if extra != nil {
		n = 8
	}
	b := wire.AppendTupleStart(nil, n)
	b = wire.AppendInt(b, ProtocolVersion)
	b = wire.AppendStr(b, "0.1.0")
	b = wire.AppendInt(b, 42)
	b = wire.AppendStr(b, "wsgi")
	b = wire.AppendStr(b, "ready")
	b = wire.AppendStr(b, "")
	b = wire.AppendInt(b, 4)
	if extra != nil {
		b = extra(b)
	}
	return b
}

func TestParseHelloDjango(t *testing.T) {
	h, err := parseHello(helloPayload(nil))
	if err != nil || h.django != nil || h.capacity != 4 {
		t.Fatalf("7 items: %+v, %v; want no Django settings", h, err)
	}
	h, err = parseHello(helloPayload(func(b []byte) []byte {
		b = wire.AppendDictStart(b)
		b = wire.AppendStrPair(b, "static_url", "/static/")
		b = wire.AppendStrPair(b, "static_root", "/srv/static")
		b = wire.AppendStr(b, "media_url")
		b = wire.AppendNone(b)
		b = wire.AppendStrPair(b, "some_later_key", "ignored")
		return wire.AppendDictEnd(b)
	}))
	want := Django{StaticURL: "/static/", StaticRoot: "/srv/static"}
	if err != nil || h.django == nil || *h.django != want || h.capacity != 4 {
		t.Fatalf("8 items: %+v (django %+v), %v; want %+v", h, h.django, err, want)
	}
	h, err = parseHello(helloPayload(wire.AppendNone))
	if err != nil || h.django != nil {
		t.Fatalf("8th item None: %+v, %v", h, err)
	}
	for name, extra := range map[string]func([]byte) []byte{
		"not a dict": func(b []byte) []byte { return wire.AppendInt(b, 1) },
		"int value": func(b []byte) []byte {
			b = wire.AppendDictStart(b)
			b = wire.AppendStr(b, "static_url")
			b = wire.AppendInt(b, 1)
			return wire.AppendDictEnd(b)
		},
		"trailing bytes": func(b []byte) []byte { return wire.AppendNone(wire.AppendNone(b)) },
	} {
		if _, err := parseHello(helloPayload(extra)); !errors.Is(err, wire.ErrProtocol) {
			t.Errorf("%s: err %v, want ErrProtocol", name, err)
		}
	}
}
