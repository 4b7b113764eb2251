package dispatch

import (
	"bytes"
	"context"
	"hash/crc32"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/krait-server/krait/internal/supervisor"
	"github.com/krait-server/krait/internal/wire"
	"github.com/krait-server/krait/internal/worker/workertest"
)

func spoolDispatcher(t *testing.T, bufResp, maxTemp, memLimit int64) *Dispatcher {
	t.Helper()
	return &Dispatcher{bufResp: bufResp, maxTemp: maxTemp, spoolMemLimit: memLimit, bufDir: t.TempDir(),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// drainOne takes the spool's next item as the drainer does: body bytes
// (from memory or the file) appended to out, or an event's frame.
func drainOne(t *testing.T, sp *spooler, out *bytes.Buffer) (progress, end bool) {
	t.Helper()
	sp.mu.Lock()
	mem, off, n, ev, end := sp.next()
	sp.mu.Unlock()
	switch {
	case mem != nil:
		out.Write(mem)
		sp.consumed(len(mem), true)
	case n > 0:
		buf := make([]byte, n)
		if _, err := sp.file.ReadAt(buf, off); err != nil {
			t.Fatal(err)
		}
		out.Write(buf)
		sp.consumed(n, false)
	case ev != nil:
		out.Write(ev.frame)
	default:
		return false, end
	}
	return true, false
}

// The spool gives back exactly what went in, in order, whatever the mix
// of memory and file and of draining and appending, with events at their
// places; memory and file are released as they drain and on clear.
func TestSpoolQueueOrder(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		bufResp, maxTemp, memLimt int64
	}{
		{"memory", 1 << 30, 1 << 30, 1 << 30},
		{"file", 64 << 10, 1 << 30, 1 << 30},
		{"global bound", 1 << 30, 1 << 30, 128 << 10},
		{"tiny memory", 1000, 1 << 30, 1 << 30},
		{"no file", 64 << 10, 0, 1 << 30},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := spoolDispatcher(t, tc.bufResp, tc.maxTemp, tc.memLimt)
			sp := &spooler{d: d, ready: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
			rng := rand.New(rand.NewPCG(1, 2))
			fill := rand.NewChaCha8([32]byte{1})
			var in, out bytes.Buffer
			sawFile := false
			for i := 0; i < 400; i++ {
				if rng.IntN(10) == 0 {
					ev := []byte("<event " + strconv.Itoa(i) + ">")
					in.Write(ev)
					sp.push(spoolEvent{frame: ev})
				} else {
					p := make([]byte, rng.IntN(100<<10)+1)
					_, _ = fill.Read(p)
					in.Write(p)
					if err := sp.append(p); err != nil {
						t.Fatal(err)
					}
				}
				sawFile = sawFile || sp.file != nil
				if memMax := max(tc.bufResp, spoolChunkSize); tc.maxTemp > 0 && sp.memBytes > memMax {
					t.Fatalf("spool memory %d past its bound %d with a file allowed", sp.memBytes, memMax)
				}
				if d.spoolMem.Load() > max(tc.memLimt, spoolChunkSize) && tc.maxTemp > 0 {
					t.Fatalf("all spools' memory %d past the bound %d", d.spoolMem.Load(), tc.memLimt)
				}
				for k := rng.IntN(6); k > 0; k-- {
					drainOne(t, sp, &out)
				}
			}
			sp.finish(nil)
			for {
				progress, end := drainOne(t, sp, &out)
				if end {
					break
				}
				if !progress {
					t.Fatal("the spool stalled before its end")
				}
			}
			if !bytes.Equal(in.Bytes(), out.Bytes()) {
				t.Fatalf("the spool gave back %d bytes (crc %x), want %d (crc %x)", out.Len(), crc32.ChecksumIEEE(out.Bytes()), in.Len(), crc32.ChecksumIEEE(in.Bytes()))
			}
			if wantFile := tc.bufResp < 1<<30 && tc.maxTemp > 0 || tc.memLimt < 1<<30; sawFile != wantFile {
				t.Fatalf("a temporary file was used: %v, want %v", sawFile, wantFile)
			}
			if b := d.spoolBytes.Load(); b != 0 {
				t.Fatalf("%d bytes still counted after draining", b)
			}
			f := sp.file
			sp.clear()
			if m := d.spoolMem.Load(); m != 0 {
				t.Fatalf("%d bytes of spool memory still counted after clear", m)
			}
			if f != nil {
				if _, err := f.Stat(); err == nil {
					t.Fatal("the temporary file is still open after clear")
				}
			}
			if ents, _ := os.ReadDir(d.bufDir); len(ents) != 0 {
				t.Fatalf("the buffer dir holds %v", ents)
			}
		})
	}
}

// room: the worker is credited while the spool takes more within its
// bounds, never past them while it holds bytes, and always when empty.
func TestSpoolRoom(t *testing.T) {
	d := spoolDispatcher(t, 64<<10, 128<<10, 1<<30)
	sp := &spooler{d: d, ready: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	defer sp.clear()
	big := make([]byte, 64<<10)
	for i := 0; i < 3; i++ { // one chunk of memory, then 128 KiB of file
		if !sp.room() {
			t.Fatalf("no room after %d KiB", i*64)
		}
		if err := sp.append(big); err != nil {
			t.Fatal(err)
		}
	}
	if sp.room() {
		t.Fatal("room past --buffer-response plus --max-temp-file-size")
	}
	var out bytes.Buffer
	for i := 0; i < 3; i++ {
		drainOne(t, sp, &out)
	}
	if !sp.room() || out.Len() != 192<<10 {
		t.Fatalf("no room once drained (%d bytes out)", out.Len())
	}

	// Memory taken by other spools and no file: an empty spool still
	// takes a window's worth, a non-empty one does not.
	d2 := spoolDispatcher(t, 1<<20, 0, 64<<10)
	d2.spoolMem.Store(64 << 10)
	sp2 := &spooler{d: d2, ready: make(chan struct{}, 1), drained: make(chan struct{}, 1)}
	defer sp2.clear()
	if !sp2.room() {
		t.Fatal("an empty spool has no room")
	}
	if err := sp2.append([]byte("x")); err != nil {
		t.Fatal(err)
	}
	if !sp2.room() {
		t.Fatal("no room in the chunk already taken")
	}
	if err := sp2.append(big[1:]); err != nil {
		t.Fatal(err)
	}
	if sp2.room() {
		t.Fatal("room past the process-wide memory bound without a file")
	}
}

// gateWriter is a recorder whose first body write blocks until open is
// closed: a client that stopped reading.
type gateWriter struct {
	recorder
	open    chan struct{}
	blocked chan struct{}
	once    sync.Once
}

func (g *gateWriter) Write(p []byte) (int, error) {
	g.once.Do(func() {
		close(g.blocked)
		<-g.open
	})
	return g.recorder.Write(p)
}

// A write that blocks hands the response to the spool: the worker is
// credited until it has sent everything while the client is stuck, and
// the client then gets every byte; memory and the file are released.
func TestServeSpoolsBehindBlockedWrite(t *testing.T) {
	for _, tc := range []struct {
		name    string
		bufResp int64
	}{{"memory", 16 << 20}, {"file", 64 << 10}} {
		t.Run(tc.name, func(t *testing.T) {
			const n = 8 << 20
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			p, err := supervisor.Start(context.Background(), supervisor.Config{
				Worker:  workertest.Settings(1, workertest.EnvMode+"=ready", workertest.EnvCapacity+"=1"),
				Workers: 1, Log: log, Output: &syncBuffer{},
			})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(p.Close)
			d := New(p, Config{MaxQueue: 10, Log: log, BufferResponse: tc.bufResp, BufferDir: t.TempDir(), MaxTempFileSize: 1 << 30})
			g := &gateWriter{recorder: recorder{cl: -1, discard: true}, open: make(chan struct{}), blocked: make(chan struct{})}
			done := make(chan struct{})
			go func() {
				defer close(done)
				d.Serve(g, get("/big?"+strconv.Itoa(n)))
			}()
			<-g.blocked
			// Everything but the 64 KiB frame being written reaches the
			// spool while the client is stuck.
			deadline := time.Now().Add(20 * time.Second)
			for {
				spooled, held, _, _ := d.SpoolStats()
				if spooled == 1 && held == n-64<<10 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("after 20 s with the client stuck: %d responses spooled, %d bytes held; want 1 and %d", spooled, held, n-64<<10)
				}
				time.Sleep(5 * time.Millisecond)
			}
			if _, _, _, files := d.SpoolStats(); (files == 1) != (tc.bufResp < n) {
				t.Fatalf("%d temporary files open, want one only when the response is over --buffer-response", files)
			}
			close(g.open)
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("the response did not finish once the client read on")
			}
			want := crc32.ChecksumIEEE([]byte(strings.Repeat("x", n)))
			if g.n != n || g.crc != want || g.aborted {
				t.Fatalf("the client got %d bytes (crc %x, aborted %v), want %d (crc %x)", g.n, g.crc, g.aborted, n, want)
			}
			if _, held, mem, files := d.SpoolStats(); held != 0 || mem != 0 || files != 0 {
				t.Fatalf("after the response: %d bytes, %d memory, %d files still held", held, mem, files)
			}
		})
	}
}

// A client that fails mid-spool: the response is aborted, the stream
// reset, and the spool released.
func TestServeSpoolClientFails(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	p, err := supervisor.Start(context.Background(), supervisor.Config{
		Worker:  workertest.Settings(1, workertest.EnvMode+"=ready", workertest.EnvCapacity+"=1"),
		Workers: 1, Log: log, Output: &syncBuffer{},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Close)
	d := New(p, Config{MaxQueue: 10, Log: log, BufferResponse: 64 << 10, BufferDir: t.TempDir(), MaxTempFileSize: 1 << 20})
	g := &gateWriter{recorder: recorder{cl: -1, discard: true, failAfter: 1}, open: make(chan struct{}), blocked: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.Serve(g, get("/big?"+strconv.Itoa(64<<20)))
	}()
	<-g.blocked
	deadline := time.Now().Add(20 * time.Second)
	for spooled, _, _, files := d.SpoolStats(); spooled != 1 || files != 1; spooled, _, _, files = d.SpoolStats() {
		if time.Now().After(deadline) {
			t.Fatalf("not spooled to a file after 20 s: %d spooled, %d files", spooled, files)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(g.open) // the next write fails: the client is gone
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("the response did not end after the client failed")
	}
	if !g.aborted {
		t.Fatal("the response was not aborted")
	}
	if _, held, mem, files := d.SpoolStats(); held != 0 || mem != 0 || files != 0 {
		t.Fatalf("after the client failed: %d bytes, %d memory, %d files still held", held, mem, files)
	}
	// The worker was told (RESET): it serves the next request.
	rec := &recorder{cl: -1}
	d.Serve(rec, get("/"))
	if rec.status != 200 || rec.body.String() != "hello" {
		t.Fatalf("next request: %d %q", rec.status, rec.body.String())
	}
}

func TestLastEnds(t *testing.T) {
	resp := wire.AppendFrame(nil, wire.Response, 0, 1, []byte("r"))
	data := wire.AppendFrame(nil, wire.Data, 0, 1, []byte("body"))
	end := wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, 1, []byte("last"))
	for _, tc := range []struct {
		b    []byte
		want bool
	}{
		{nil, false},
		{resp, false},
		{append(append([]byte(nil), resp...), data...), false},
		{append(append([]byte(nil), resp...), end...), true},
		{append(append([]byte(nil), data...), end...), true},
	} {
		if got := lastEnds(tc.b); got != tc.want {
			t.Errorf("lastEnds(%q) = %v, want %v", tc.b, got, tc.want)
		}
	}
}

// BenchmarkServeSpoolArming compares spooling off and on for a hello world
// (a batch that ends the stream: nothing is armed) and a 256 KiB streamed
// response (every write armed, none blocks).
func BenchmarkServeSpoolArming(b *testing.B) {
	for name, target := range map[string]string{"hello": "/", "256KiB": "/big?262144"} {
		for _, bufResp := range []int64{0, DefaultBufferResponse} {
			b.Run(name+"/buffer-response="+strconv.FormatInt(bufResp, 10), func(b *testing.B) {
				e := newEnv(b, 1, 4, 100)
				e.d.bufResp = bufResp
				r := get(target)
				w := &nopWriter{}
				e.d.Serve(w, r)
				b.ReportAllocs()
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					e.d.Serve(w, r)
					if w.status != 200 {
						b.Fatal(w.status)
					}
				}
			})
		}
	}
}
