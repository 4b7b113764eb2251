package h2

import (
	"bytes"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/krait-server/krait/internal/exchange"
)

// rawH2C opens a prior-knowledge HTTP/2 connection to an h2c engine and
// returns a framer after the preface and an empty SETTINGS were sent.
func rawH2C(t *testing.T) (*http2.Framer, net.Conn) {
	t.Helper()
	h := handlerFunc(func(w exchange.ResponseWriter, r *exchange.Request) { _ = w.WriteHeader(200, nil, nil, 0) })
	f := start(t, h, Config{Cleartext: true}, true)
	c, err := net.DialTimeout("tcp", f.addr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(15 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	return http2.NewFramer(c, c), c
}

type h2event struct {
	status   string // :status of a response HEADERS on the stream
	settings bool   // a SETTINGS ACK
	goaway   http2.ErrCode
	rst      http2.ErrCode
	closed   bool
}

// decoders holds the HPACK decoder of each test connection (the tests
// here do not run in parallel).
var decoders = map[*http2.Framer]*hpack.Decoder{}

// until reads frames until stop says so or the connection ends.
func until(t *testing.T, fr *http2.Framer, stop func(h2event) bool) h2event {
	t.Helper()
	// The server's responses share one HPACK table per connection.
	dec := decoders[fr]
	if dec == nil {
		dec = hpack.NewDecoder(4096, nil)
		decoders[fr] = dec
	}
	for {
		frame, err := fr.ReadFrame()
		var ev h2event
		switch {
		case err != nil:
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("no answer within the deadline")
			}
			ev.closed = true
		default:
			switch f := frame.(type) {
			case *http2.SettingsFrame:
				ev.settings = f.IsAck()
			case *http2.GoAwayFrame:
				ev.goaway = f.ErrCode
			case *http2.RSTStreamFrame:
				ev.rst = f.ErrCode
			case *http2.HeadersFrame:
				fields, err := dec.DecodeFull(f.HeaderBlockFragment())
				if err != nil {
					t.Fatal(err)
				}
				for _, hf := range fields {
					if hf.Name == ":status" {
						ev.status = hf.Value
					}
				}
			}
		}
		if ev.closed || stop(ev) {
			return ev
		}
	}
}

type reqEncoder struct {
	buf bytes.Buffer
	enc *hpack.Encoder
}

func newReqEncoder() *reqEncoder {
	e := &reqEncoder{}
	e.enc = hpack.NewEncoder(&e.buf)
	return e
}

func (e *reqEncoder) block(extra ...string) []byte {
	e.buf.Reset()
	all := append([]string{":method", "GET", ":scheme", "http", ":path", "/", ":authority", "x"}, extra...)
	for i := 0; i < len(all); i += 2 {
		_ = e.enc.WriteField(hpack.HeaderField{Name: all[i], Value: all[i+1]})
	}
	return bytes.Clone(e.buf.Bytes())
}

// TestFilterDuplicateSettings: a SETTINGS frame repeating a parameter is
// acknowledged (Go alone hangs up), and requests go on working.
func TestFilterDuplicateSettings(t *testing.T) {
	fr, _ := rawH2C(t)
	if err := fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100}, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1}); err != nil {
		t.Fatal(err)
	}
	if ev := until(t, fr, func(e h2event) bool { return e.settings || e.goaway != 0 }); !ev.settings {
		t.Fatalf("duplicate settings: %+v, want a SETTINGS ACK", ev)
	}
	enc := newReqEncoder()
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: enc.block(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	if ev := until(t, fr, func(e h2event) bool { return e.status != "" || e.goaway != 0 }); ev.status != "200" {
		t.Fatalf("request after duplicate settings: %+v", ev)
	}
}

// TestFilterConnectionSpecificFields: requests with fields from the
// dynamic table are served; one with a connection-specific field (even
// when it arrives as an index into the dynamic table) ends the
// connection instead of getting a 400; TE: trailers is allowed.
func TestFilterConnectionSpecificFields(t *testing.T) {
	for _, bad := range [][]string{{"connection", "keep-alive"}, {"te", "gzip"}, {"upgrade", "h2c"}, {"transfer-encoding", "chunked"}} {
		t.Run(bad[0], func(t *testing.T) {
			fr, _ := rawH2C(t)
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			enc := newReqEncoder()
			id := uint32(1)
			for _, ok := range [][]string{{"x-a", "1"}, {"x-a", "1", "te", "trailers"}} {
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc.block(ok...), EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
				if ev := until(t, fr, func(e h2event) bool { return e.status != "" || e.goaway != 0 }); ev.status != "200" {
					t.Fatalf("valid request %v: %+v", ok, ev)
				}
				id += 2
			}
			// Split over HEADERS + CONTINUATION: the filter reassembles.
			blk := enc.block(bad...)
			if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: blk[:len(blk)/2], EndStream: true}); err != nil {
				t.Fatal(err)
			}
			if err := fr.WriteContinuation(id, true, blk[len(blk)/2:]); err != nil {
				t.Fatal(err)
			}
			ev := until(t, fr, func(e h2event) bool { return e.status != "" })
			if !ev.closed || ev.status != "" {
				t.Fatalf("request with %s: %+v, want the connection closed without a response", bad[0], ev)
			}
		})
	}
}

func TestDedupeSettings(t *testing.T) {
	var buf bytes.Buffer
	fr := http2.NewFramer(&buf, nil)
	_ = fr.WriteSettings(http2.Setting{ID: 4, Val: 100}, http2.Setting{ID: 3, Val: 7}, http2.Setting{ID: 4, Val: 1})
	out := dedupeSettings(buf.Bytes())
	got, err := http2.NewFramer(nil, bytes.NewReader(out)).ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf := got.(*http2.SettingsFrame)
	if sf.NumSettings() != 2 || sf.Setting(0) != (http2.Setting{ID: 4, Val: 1}) || sf.Setting(1) != (http2.Setting{ID: 3, Val: 7}) {
		t.Fatalf("deduped: %v %v (%d)", sf.Setting(0), sf.Setting(1), sf.NumSettings())
	}
}
