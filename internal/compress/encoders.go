package compress

import (
	"fmt"
	"io"
	"sync"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// encoder is what the three libraries' streaming writers have in common.
type encoder interface {
	io.Writer
	Flush() error // emit everything written so far, decodable
	Close() error // end the stream
	Reset(io.Writer)
}

// Windows bound the memory of one encoder (measured with the default
// levels: about 1.1 MB for gzip, 2.3 MB for brotli, 2.3 MB for zstd) at no
// cost in ratio for responses under the window. zstd's is far below the
// 8 MB RFC 9659 requires for HTTP; brotli's default (4 MB at quality 4)
// would cost 10 MB per encoder.
const (
	brotliWindowLog = 18      // 256 KiB
	zstdWindow      = 1 << 19 // 512 KiB
)

// encoderPools keeps idle encoders per coding: creating one costs its
// whole memory, resetting one costs nothing.
type encoderPools struct {
	pools [numCodings]sync.Pool
}

func newEncoderPools(cfg *Config, enabled []coding) (*encoderPools, error) {
	p := &encoderPools{}
	on := [numCodings]bool{}
	for _, c := range enabled {
		on[c] = true
	}
	p.pools[gzipC].New = func() any {
		w, err := gzip.NewWriterLevel(io.Discard, cfg.GzipLevel)
		if err != nil {
			panic(err) // the level was validated
		}
		return encoder(w)
	}
	brOpts := brotli.WriterOptions{Quality: cfg.BrotliLevel, LGWin: brotliWindowLog}
	p.pools[brotliC].New = func() any {
		return encoder(brotli.NewWriterOptions(io.Discard, brOpts))
	}
	zstdOpts := []zstd.EOption{
		zstd.WithEncoderLevel(zstdLevel(cfg.ZstdLevel)),
		// One goroutine-free encoder per response: the connection's
		// goroutine does the work, so compression never runs ahead
		// of the response and a stalled client holds no extra goroutine.
		zstd.WithEncoderConcurrency(1),
		zstd.WithWindowSize(zstdWindow),
		zstd.WithLowerEncoderMem(true),
	}
	p.pools[zstdC].New = func() any {
		w, err := zstd.NewWriter(nil, zstdOpts...)
		if err != nil {
			panic(err) // the options are constants, checked in New
		}
		return encoder(w)
	}
	// Build the enabled ones now so a bad option fails New, not a request.
	if on[gzipC] {
		if _, err := gzip.NewWriterLevel(io.Discard, cfg.GzipLevel); err != nil {
			return nil, fmt.Errorf("compress: gzip: %w", err)
		}
	}
	if on[zstdC] {
		if _, err := zstd.NewWriter(nil, zstdOpts...); err != nil {
			return nil, fmt.Errorf("compress: zstd: %w", err)
		}
	}
	return p, nil
}

func (p *encoderPools) get(c coding, dst io.Writer) encoder {
	e := p.pools[c].Get().(encoder)
	e.Reset(dst)
	return e
}

func (p *encoderPools) put(c coding, e encoder) { p.pools[c].Put(e) }
