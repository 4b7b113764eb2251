package codec

import (
	"errors"
	"strings"
	"testing"

	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/wire"
)

// headPayload encodes a RESPONSE payload: status (a str or an int), one
// header per name in names with a value of fill bytes, and (asgi) the
// trailers flag.
func headPayload(status any, fill int, asgi bool, names ...string) []byte {
	items := 2
	if asgi {
		items = 3
	}
	b := wire.AppendTupleStart(nil, items)
	switch s := status.(type) {
	case string:
		b = wire.AppendUTF8Str(b, s)
	case int:
		b = wire.AppendInt(b, int64(s))
	}
	b = wire.AppendListStart(b, len(names))
	for _, n := range names {
		b = wire.AppendTupleStart(b, 2)
		b = wire.AppendBytes(b, n)
		b = wire.AppendBytes(b, strings.Repeat("a", fill))
	}
	if asgi {
		b = wire.AppendBool(b, false)
	}
	return b
}

// TestResponseHeadLimit: a head (or trailer/early hint field list) up to
// MaxResponseHead bytes, counted as the adapter counts them, is accepted;
// one byte more is the app's error (ErrApp: a 500 for that stream), not a
// protocol error (which would kill the worker).
func TestResponseHeadLimit(t *testing.T) {
	var ps Parser
	const lim = MaxResponseHead
	tests := []struct {
		name    string
		payload []byte
		ok      bool
	}{
		// "200 OK" counts 6, X-Huge 6 + 4 + its value.
		{"wsgi at the limit", headPayload("200 OK", lim-6-10, false, "X-Huge"), true},
		{"wsgi one over", headPayload("200 OK", lim-6-10+1, false, "X-Huge"), false},
		// An int status counts 3.
		{"asgi at the limit", headPayload(200, lim-3-10, true, "x-huge"), true},
		{"asgi one over", headPayload(200, lim-3-10+1, true, "x-huge"), false},
		// Dropped hop-by-hop fields count too, as in the adapter.
		{"hop-by-hop counted", headPayload(200, (lim-3)/2-14+1, true, "connection", "keep-alive"), false},
		{"long status line", headPayload("200 "+strings.Repeat("r", lim), 0, false), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ps.Response(tt.payload)
			switch {
			case tt.ok && err != nil:
				t.Fatalf("refused: %v", err)
			case !tt.ok && (!errors.Is(err, ErrApp) || errors.Is(err, wire.ErrProtocol)):
				t.Fatalf("err = %v, want an app error (ErrApp)", err)
			case !tt.ok && !strings.Contains(err.Error(), "over 65536 bytes"):
				t.Fatalf("err = %v, want it to name the limit", err)
			}
		})
	}
	fields := func(fill int) []byte {
		b := wire.AppendListStart(nil, 1)
		b = wire.AppendTupleStart(b, 2)
		b = wire.AppendBytes(b, "link")
		return wire.AppendBytes(b, strings.Repeat("l", fill))
	}
	if _, _, err := ps.FieldList(fields(lim-8), "early hint"); err != nil {
		t.Fatalf("early hint at the limit: %v", err)
	}
	if _, _, err := ps.FieldList(fields(lim-8+1), "early hint"); !errors.Is(err, ErrApp) {
		t.Fatalf("early hint one over: %v, want ErrApp", err)
	}
}

// response encodes a RESPONSE with the given status (str, bytes or int),
// headers (name, value pairs of str) and, when trailers is not nil, the
// ASGI trailers flag.
func response(status any, trailers *bool, kv ...string) []byte {
	items := 2
	if trailers != nil {
		items = 3
	}
	b := wire.AppendTupleStart(nil, items)
	switch s := status.(type) {
	case string:
		b = wire.AppendUTF8Str(b, s)
	case []byte:
		b = wire.AppendBytes(b, s)
	case int:
		b = wire.AppendInt(b, int64(s))
	case nil:
		b = wire.AppendNone(b)
	}
	b = wire.AppendListStart(b, len(kv)/2)
	for i := 0; i < len(kv); i += 2 {
		b = wire.AppendTupleStart(b, 2)
		b = wire.AppendUTF8Str(b, kv[i])
		b = wire.AppendUTF8Str(b, kv[i+1])
	}
	if trailers != nil {
		b = wire.AppendBool(b, *trailers)
	}
	return b
}

func names(hs [][]byte) string {
	var s []string
	for _, h := range hs {
		s = append(s, string(h))
	}
	return strings.Join(s, ",")
}

func TestParseResponseCases(t *testing.T) {
	yes, no := true, false
	type want struct {
		status   int
		reason   string
		headers  string // "name=value;..." in order
		cl       int64
		trailers bool
		dropped  string
	}
	tests := []struct {
		name    string
		payload []byte
		want    *want // nil: an error
		proto   bool  // the error wraps wire.ErrProtocol, not ErrApp
	}{
		{"wsgi", response("200 OK", nil, "Content-Type", "text/plain", "Content-Length", "5"),
			&want{200, "OK", "Content-Type=text/plain;Content-Length=5", 5, false, ""}, false},
		{"wsgi status without reason", response("204", nil), &want{204, "", "", -1, false, ""}, false},
		{"bytes status", response([]byte("418 I'm a teapot"), nil), &want{418, "I'm a teapot", "", -1, false, ""}, false},
		{"asgi int status", response(201, &no, "x-a", "1"), &want{201, "", "x-a=1", -1, false, ""}, false},
		{"asgi trailers flag", response(200, &yes, "trailer", "x-checksum"),
			&want{200, "", "trailer=x-checksum", -1, true, ""}, false},
		{"latin-1 value", response("200 OK", nil, "X-Name", "café"), &want{200, "OK", "X-Name=caf\xe9", -1, false, ""}, false},
		{"hop-by-hop dropped and named", response("200 OK", nil, "Connection", "close", "X-A", "1", "Transfer-Encoding", "chunked",
			"keep-alive", "5", "Upgrade", "h2c", "TE", "trailers", "Proxy-Connection", "x", "Trailer", "x"),
			&want{200, "OK", "X-A=1", -1, false, "Connection,Transfer-Encoding,keep-alive,Upgrade,TE,Proxy-Connection,Trailer"}, false},
		{"repeated equal Content-Length", response("200 OK", nil, "Content-Length", "3", "content-length", "3"),
			&want{200, "OK", "Content-Length=3;content-length=3", 3, false, ""}, false},
		{"Content-Length zero", response(200, &no, "content-length", "0"), &want{200, "", "content-length=0", 0, false, ""}, false},

		{"status 99", response(99, &no), nil, false},
		{"status 1000", response(1000, &no), nil, false},
		{"status line 2 digits", response("20 OK", nil), nil, false},
		{"status line no space", response("200OK", nil), nil, false},
		{"status line letters", response("2x0 OK", nil), nil, false},
		{"status line below 100", response("099 x", nil), nil, false},
		{"reason with CR", response("200 O\rK", nil), nil, false},
		{"status None", response(nil, nil), nil, false},
		{"empty name", response("200 OK", nil, "", "x"), nil, false},
		{"name with space", response("200 OK", nil, "X A", "x"), nil, false},
		{"name with colon", response("200 OK", nil, "X:A", "x"), nil, false},
		{"name non-ASCII", response("200 OK", nil, "Xé", "x"), nil, false},
		{"value with LF", response("200 OK", nil, "X-A", "a\nb"), nil, false},
		{"value with CR", response("200 OK", nil, "X-A", "a\rb"), nil, false},
		{"value with NUL", response("200 OK", nil, "X-A", "a\x00b"), nil, false},
		{"value not latin-1", response("200 OK", nil, "X-A", "\u20ac"), nil, false},
		{"Content-Length sign", response("200 OK", nil, "Content-Length", "+5"), nil, false},
		{"Content-Length space", response("200 OK", nil, "Content-Length", " 5"), nil, false},
		{"Content-Length list", response("200 OK", nil, "Content-Length", "5,5"), nil, false},
		{"Content-Length 19 digits", response("200 OK", nil, "Content-Length", "1000000000000000000"), nil, false},
		{"Content-Lengths differ", response("200 OK", nil, "Content-Length", "5", "Content-Length", "6"), nil, false},

		{"not a sequence", wire.AppendInt(nil, 200), nil, true},
		{"four items", append(wire.AppendTupleStart(nil, 4), response(200, &no)[2:]...), nil, true},
		{"trailing bytes", append(response("200 OK", nil), 'N'), nil, true},
		{"truncated", response("200 OK", nil, "X-A", "1")[:12], nil, true},
	}
	var ps Parser
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := ps.Response(tt.payload)
			if tt.want == nil {
				switch {
				case err == nil:
					t.Fatalf("accepted: %+v", resp)
				case tt.proto && !errors.Is(err, wire.ErrProtocol):
					t.Fatalf("err = %v, want a protocol error", err)
				case !tt.proto && (!errors.Is(err, ErrApp) || errors.Is(err, wire.ErrProtocol)):
					t.Fatalf("err = %v, want an app error", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			var hs []string
			for _, h := range resp.Headers {
				hs = append(hs, string(h.Name)+"="+string(h.Value))
			}
			got := want{resp.Status, string(resp.Reason), strings.Join(hs, ";"), resp.ContentLength, resp.Trailers, names(resp.Dropped)}
			if got != *tt.want {
				t.Fatalf("got  %+v\nwant %+v", got, *tt.want)
			}
		})
	}
}

func TestFieldList(t *testing.T) {
	fields := func(kv ...string) []byte {
		b := wire.AppendListStart(nil, len(kv)/2)
		for i := 0; i < len(kv); i += 2 {
			b = wire.AppendTupleStart(b, 2)
			b = wire.AppendBytes(b, kv[i])
			b = wire.AppendUTF8Str(b, kv[i+1])
		}
		return b
	}
	var ps Parser
	hs, dropped, err := ps.FieldList(fields("X-Checksum", "abc", "Content-Length", "3", "Trailer", "x", "connection", "close", "Link", "</a>"), "trailers")
	if err != nil || len(hs) != 2 || string(hs[0].Name) != "X-Checksum" || string(hs[1].Value) != "</a>" ||
		names(dropped) != "Content-Length,Trailer,connection" {
		t.Fatalf("got %q dropped %q err %v", hs, names(dropped), err)
	}
	for _, bad := range [][]byte{fields("X A", "1"), fields("X", "a\r\nb"), fields("", "")} {
		if _, _, err := ps.FieldList(bad, "trailers"); !errors.Is(err, ErrApp) {
			t.Errorf("FieldList(%q) err = %v, want ErrApp", bad, err)
		}
	}
	if _, _, err := ps.FieldList(append(fields("X", "1"), 'N'), "trailers"); !errors.Is(err, wire.ErrProtocol) {
		t.Errorf("trailing bytes: err = %v, want a protocol error", err)
	}

	// WS_ACCEPT: (subprotocol, headers).
	acc := append(wire.AppendUTF8Str(wire.AppendTupleStart(nil, 2), "chat"), fields("X-A", "1", "Upgrade", "x")...)
	sub, hasSub, hs, dropped, err := ps.Accept(acc)
	if err != nil || !hasSub || string(sub) != "chat" || len(hs) != 1 || names(dropped) != "Upgrade" {
		t.Fatalf("Accept: %q %v %q %q %v", sub, hasSub, hs, names(dropped), err)
	}
	acc = append(wire.AppendNone(wire.AppendTupleStart(nil, 2)), fields()...)
	if _, hasSub, hs, _, err := ps.Accept(acc); err != nil || hasSub || len(hs) != 0 {
		t.Fatalf("Accept(None): %v %q %v", hasSub, hs, err)
	}
	if _, _, _, _, err := ps.Accept(wire.AppendTupleStart(nil, 3)); !errors.Is(err, wire.ErrProtocol) {
		t.Fatalf("Accept of a 3-tuple: %v", err)
	}
}

func TestCloseFrames(t *testing.T) {
	b := AppendClose(nil, 7, 4001, "bye é")
	h, err := wire.ParseHeader(b)
	if err != nil || h.Type != wire.WSClose || h.Stream != 7 || int(h.Length) != len(b)-wire.HeaderSize {
		t.Fatalf("header %+v %v", h, err)
	}
	code, reason, err := ParseClose(b[wire.HeaderSize:])
	if err != nil || code != 4001 || reason != "bye é" {
		t.Fatalf("ParseClose = %d %q %v", code, reason, err)
	}
	none := wire.AppendNone(wire.AppendInt(wire.AppendTupleStart(nil, 2), 1000))
	if code, reason, err := ParseClose(none); err != nil || code != 1000 || reason != "" {
		t.Fatalf("ParseClose(None reason) = %d %q %v", code, reason, err)
	}
	if _, _, err := ParseClose(wire.AppendTupleStart(nil, 1)); !errors.Is(err, wire.ErrProtocol) {
		t.Fatalf("ParseClose of a 1-tuple: %v", err)
	}
	for code := 0; code < 6000; code++ {
		want := code >= 1000 && code <= 1014 && code != 1004 && code != 1005 && code != 1006 || code >= 3000 && code <= 4999
		if ValidCloseCode(code) != want {
			t.Fatalf("ValidCloseCode(%d) = %v", code, !want)
		}
	}
	if r := CloseReason(strings.Repeat("a", 123)); len(r) != 123 {
		t.Fatalf("a 123-byte reason cut to %d", len(r))
	}
	// 122 ASCII bytes then a 2-byte rune: the rune does not fit.
	if r := CloseReason(strings.Repeat("a", 122) + "éé"); r != strings.Repeat("a", 122) {
		t.Fatalf("cut inside a rune: %q", r)
	}
}

func TestSendFilePayload(t *testing.T) {
	p := wire.AppendInt(wire.AppendInt(wire.AppendUTF8Str(wire.AppendTupleStart(nil, 3), "/tmp/f"), 10), 20)
	path, off, count, err := SendFile(p)
	if err != nil || string(path) != "/tmp/f" || off != 10 || count != 20 {
		t.Fatalf("SendFile = %q %d %d %v", path, off, count, err)
	}
	neg := wire.AppendInt(wire.AppendInt(wire.AppendUTF8Str(wire.AppendTupleStart(nil, 3), "/tmp/f"), -1), 20)
	if _, _, _, err := SendFile(neg); err == nil {
		t.Fatal("negative offset accepted")
	}
	if _, _, _, err := SendFile(wire.AppendTupleStart(nil, 2)); err == nil {
		t.Fatal("2-tuple accepted")
	}
}

func TestResponseAllocs(t *testing.T) {
	p := response("200 OK", nil, "Content-Type", "text/plain", "Connection", "close", "X-Name", "café")
	var ps Parser
	if _, err := ps.Response(p); err != nil {
		t.Fatal(err)
	}
	if n := testing.AllocsPerRun(100, func() { _, _ = ps.Response(p) }); n != 0 {
		t.Fatalf("%v allocations per RESPONSE", n)
	}
}

// FuzzASGIPayloads feeds arbitrary payloads to the decoders of the ASGI
// frames a worker sends: they must fail cleanly, never panic.
func FuzzASGIPayloads(f *testing.F) {
	f.Add([]byte{'[', 1, 0, 0, 0, ')', 2, 's', 1, 0, 0, 0, 'a', 's', 1, 0, 0, 0, 'b'})
	f.Add([]byte{')', 2, 'N', '[', 0, 0, 0, 0})
	f.Add([]byte{')', 2, 'i', 0xe8, 3, 0, 0, 'u', 2, 0, 0, 0, 'o', 'k'})
	f.Add([]byte{')', 3, 'i', 200, 0, 0, 0, '[', 0, 0, 0, 0, 'T'})
	f.Fuzz(func(t *testing.T, p []byte) {
		var ps Parser
		if hs, _, err := ps.FieldList(p, "trailers"); err == nil {
			for _, h := range hs {
				if !httpx.ValidToken(h.Name) || !httpx.SafeValue(h.Value) {
					t.Fatalf("invalid field accepted: %q: %q", h.Name, h.Value)
				}
			}
		}
		_, _, _, _, _ = ps.Accept(p)
		_, _, _ = ParseClose(p)
		_, _ = ps.Response(p)
		_, _, _, _ = SendFile(p)
	})
}
