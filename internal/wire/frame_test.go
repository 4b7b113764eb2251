package wire

import (
	"bytes"
	"errors"
	"io"
	"sync"
	"testing"
)

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    Header
		wantErr bool
	}{
		{"data end", []byte{5, 0, 0, 0, 3, 1, 0, 0, 7, 0, 0, 0}, Header{5, Data, 1, 7}, false},
		{"max payload", []byte{0, 0, 0x10, 0, 4, 0, 0, 0, 1, 0, 0, 0}, Header{MaxPayload, Response, 0, 1}, false},
		{"too long", []byte{1, 0, 0x10, 0, 4, 0, 0, 0, 1, 0, 0, 0}, Header{}, true},
		{"type 0", []byte{0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0}, Header{}, true},
		{"type 0x13", []byte{0, 0, 0, 0, 0x13, 0, 0, 0, 1, 0, 0, 0}, Header{}, true},
		{"recall", []byte{0, 0, 0, 0, 0x10, 0, 0, 0, 1, 0, 0, 0}, Header{0, Recall, 0, 1}, false},
		{"returned", []byte{0, 0, 0, 0, 0x11, 1, 0, 0, 1, 0, 0, 0}, Header{0, Returned, 1, 1}, false},
		{"trailers", []byte{0, 0, 0, 0, 9, 1, 0, 0, 1, 0, 0, 0}, Header{0, Trailers, 1, 1}, false},
		{"ws message flags", []byte{0, 0, 0, 0, 0x0c, 6, 0, 0, 1, 0, 0, 0}, Header{0, WSMessage, FlagBinary | FlagMore, 1}, false},
		{"ws close binary flag", []byte{0, 0, 0, 0, 0x0d, 2, 0, 0, 1, 0, 0, 0}, Header{}, true},
		{"flag bits", []byte{0, 0, 0, 0, 3, 2, 0, 0, 1, 0, 0, 0}, Header{}, true},
		{"reserved", []byte{0, 0, 0, 0, 3, 0, 0, 1, 1, 0, 0, 0}, Header{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h, err := ParseHeader(tt.in)
			if tt.wantErr {
				if !errors.Is(err, ErrProtocol) {
					t.Fatalf("err = %v, want ErrProtocol", err)
				}
				return
			}
			if err != nil || h != tt.want {
				t.Fatalf("got %+v, %v; want %+v", h, err, tt.want)
			}
			var b [HeaderSize]byte
			PutHeader(b[:], int(h.Length), h.Type, h.Flags, h.Stream)
			if !bytes.Equal(b[:], tt.in) {
				t.Fatalf("PutHeader = %v, want %v", b, tt.in)
			}
		})
	}
}

// trickleReader returns at most n bytes per Read, to exercise partial frames.
type trickleReader struct {
	r io.Reader
	n int
}

func (t *trickleReader) Read(p []byte) (int, error) {
	if len(p) > t.n {
		p = p[:t.n]
	}
	return t.r.Read(p)
}

func TestReaderFrames(t *testing.T) {
	var stream []byte
	big := bytes.Repeat([]byte("x"), MaxPayload)
	type frame struct {
		t       Type
		flags   uint8
		id      uint32
		payload []byte
	}
	frames := []frame{
		{Hello, 0, 0, []byte("hi")},
		{Data, FlagEndStream, 1, nil},
		{Data, 0, 2, big},
		{Window, 0, 2, []byte{1, 2, 3, 4}},
		{Data, 0, 3, big[:70000]},
	}
	for _, f := range frames {
		stream = AppendFrame(stream, f.t, f.flags, f.id, f.payload)
	}
	for _, chunk := range []int{1, 7, 4096, 1 << 30} {
		r := NewReader(&trickleReader{bytes.NewReader(stream), chunk})
		for i, f := range frames {
			h, p, err := r.ReadFrame()
			if err != nil {
				t.Fatalf("chunk %d frame %d: %v", chunk, i, err)
			}
			if h.Type != f.t || h.Flags != f.flags || h.Stream != f.id || !bytes.Equal(p, f.payload) {
				t.Fatalf("chunk %d frame %d: got %+v (%d bytes)", chunk, i, h, len(p))
			}
		}
		if _, _, err := r.ReadFrame(); !errors.Is(err, io.EOF) {
			t.Fatalf("chunk %d: at end err = %v, want EOF", chunk, err)
		}
	}
	// A stream cut inside a frame is an unexpected EOF.
	r := NewReader(bytes.NewReader(stream[:30]))
	var err error
	for err == nil {
		_, _, err = r.ReadFrame()
	}
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated: err = %v", err)
	}
}

// raceEnabled is set under -race, which makes allocation counts meaningless.
var raceEnabled bool

func TestReaderNoAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("allocation counts differ under the race detector")
	}
	var stream []byte
	for i := 0; i < 100; i++ {
		stream = AppendFrame(stream, Data, 0, uint32(i+1), []byte("payload"))
	}
	br := bytes.NewReader(stream)
	r := NewReader(br)
	allocs := testing.AllocsPerRun(10, func() {
		br.Reset(stream)
		r.start, r.end = 0, 0
		for {
			if _, _, err := r.ReadFrame(); err != nil {
				break
			}
		}
	})
	if allocs > 2 { // the EOF error wrap
		t.Fatalf("allocs per 100 frames = %v", allocs)
	}
}

type countingWriter struct {
	mu     sync.Mutex
	buf    bytes.Buffer
	writes int
}

func (c *countingWriter) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes++
	return c.buf.Write(p)
}

func TestWriterConcurrent(t *testing.T) {
	cw := &countingWriter{}
	w := NewWriter(cw)
	const goroutines, each = 8, 200
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			var f []byte
			for i := 0; i < each; i++ {
				f = AppendFrame(f[:0], Data, 0, uint32(g+1), []byte{byte(i)})
				if err := w.Append(f); err != nil {
					t.Error(err)
					return
				}
			}
		}(g)
	}
	wg.Wait()
	// Every frame arrived whole and in per-goroutine order.
	r := NewReader(bytes.NewReader(cw.buf.Bytes()))
	next := make([]int, goroutines)
	for n := 0; n < goroutines*each; n++ {
		h, p, err := r.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		g := int(h.Stream) - 1
		if int(p[0]) != next[g]%256 {
			t.Fatalf("stream %d: got %d want %d", h.Stream, p[0], next[g])
		}
		next[g]++
	}
	t.Logf("%d frames in %d writes", goroutines*each, cw.writes)
}

type failWriter struct{}

func (failWriter) Write(p []byte) (int, error) { return 0, io.ErrClosedPipe }

func TestWriterStickyError(t *testing.T) {
	w := NewWriter(failWriter{})
	if err := w.Append([]byte("x")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("err = %v", err)
	}
	if err := w.Append([]byte("y")); !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("second err = %v", err)
	}
	w2 := NewWriter(io.Discard)
	w2.Close()
	if err := w2.Append([]byte("x")); !errors.Is(err, ErrWriterClosed) {
		t.Fatalf("closed err = %v", err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add(AppendFrame(nil, Data, 1, 3, []byte("abc")))
	f.Add(append(AppendFrame(nil, Hello, 0, 0, []byte("x")), AppendWindow(nil, 2, 5)...))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 3, 0, 0, 0, 1, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := NewReader(&trickleReader{bytes.NewReader(b), 5})
		total := 0
		for {
			h, p, err := r.ReadFrame()
			if err != nil {
				return
			}
			if int(h.Length) != len(p) || h.Length > MaxPayload {
				t.Fatalf("header %+v with %d payload bytes", h, len(p))
			}
			total += HeaderSize + len(p)
			if total > len(b) {
				t.Fatalf("read %d bytes from %d", total, len(b))
			}
			if h.Type == Window {
				ParseWindow(p)
			}
		}
	})
}
