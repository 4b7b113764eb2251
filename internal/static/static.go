package static

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/errpage"
	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
)

// Kind is the route kind of static mounts (internal/route), naming them
// in logs and errors.
const Kind = "static"

// Defaults of Config's tuning fields (used when they are zero).
const (
	// DefaultCacheBytes bounds the file contents held in memory.
	DefaultCacheBytes = 32 << 20
	// DefaultCacheFileMax is the largest file held in memory; larger
	// ones are sent with sendfile(2) on every request.
	DefaultCacheFileMax = 256 << 10
	// DefaultCacheEntries bounds the paths whose metadata is cached.
	DefaultCacheEntries = 4096
	// DefaultRecheck is how long a cached file is trusted before it is
	// stat(2)ed again: edits on disk show within about a second.
	DefaultRecheck = time.Second
)

// Config describes one static mount.
type Config struct {
	// Prefix is the URL path prefix the mount is routed at ("/static");
	// the rest of the request path names the file below Dir.
	Prefix string
	// Dir is the directory served; it must exist.
	Dir string
	// MaxAge is the Cache-Control max-age for names without a content
	// hash, in whole seconds; 0 sends "no-cache" (always revalidate).
	// krait serve's default (--static-max-age) is in internal/config.
	MaxAge time.Duration
	// CacheBytes bounds file contents held in memory (default
	// DefaultCacheBytes; negative: hold none).
	CacheBytes int64
	// CacheFileMax is the largest file held in memory (default DefaultCacheFileMax).
	CacheFileMax int64
	// CacheEntries bounds the cached paths (default DefaultCacheEntries;
	// negative: cache nothing, every request opens the file).
	CacheEntries int
	// Recheck is how long cached metadata is trusted (default DefaultRecheck).
	Recheck time.Duration
	// Log receives the mount's start-up line and debug lines on refused
	// paths; nil discards.
	Log *slog.Logger
}

// Handler serves the files of one directory. It is an exchange.Handler,
// safe for concurrent use; Close releases the directory.
type Handler struct {
	prefix     []byte // without a trailing '/'
	prefixStr  string
	root       *os.Root
	maxAgeCC   []byte
	fileMax    int64
	maxBytes   int64
	maxEntries int
	recheck    time.Duration
	start      time.Time
	log        *slog.Logger
	cache      cache
}

// New opens cfg.Dir as an os.Root and returns its handler.
func New(cfg Config) (*Handler, error) {
	if !strings.HasPrefix(cfg.Prefix, "/") {
		return nil, fmt.Errorf("static: prefix %q must start with '/'", cfg.Prefix)
	}
	if cfg.MaxAge < 0 {
		return nil, fmt.Errorf("static: negative max-age %v", cfg.MaxAge)
	}
	dir, err := filepath.Abs(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("static: %s is not a directory", dir)
	}
	root, err := os.OpenRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("static: %w", err)
	}
	h := &Handler{
		prefix:     []byte(strings.TrimSuffix(cfg.Prefix, "/")),
		prefixStr:  cfg.Prefix,
		root:       root,
		fileMax:    cfg.CacheFileMax,
		maxBytes:   cfg.CacheBytes,
		maxEntries: cfg.CacheEntries,
		recheck:    cfg.Recheck,
		start:      time.Now(),
		log:        cfg.Log,
		cache:      cache{m: map[string]*entry{}},
	}
	if h.log == nil {
		h.log = slog.New(slog.DiscardHandler)
	}
	if secs := int64(cfg.MaxAge / time.Second); secs > 0 {
		h.maxAgeCC = []byte("public, max-age=" + strconv.FormatInt(secs, 10))
	} else {
		h.maxAgeCC = []byte("no-cache")
	}
	if h.fileMax == 0 {
		h.fileMax = DefaultCacheFileMax
	}
	if h.maxBytes == 0 {
		h.maxBytes = DefaultCacheBytes
	}
	if h.maxBytes < 0 {
		h.maxBytes, h.fileMax = 0, -1
	}
	if h.maxEntries == 0 {
		h.maxEntries = DefaultCacheEntries
	}
	if h.recheck <= 0 {
		h.recheck = DefaultRecheck
	}
	h.log.Info("serving static files", "prefix", cfg.Prefix, "dir", dir, "cache_control", string(h.maxAgeCC))
	if empty, err := dirEmpty(dir); err == nil && empty {
		h.log.Warn("static directory is empty", "prefix", cfg.Prefix, "dir", dir)
	}
	return h, nil
}

func dirEmpty(dir string) (bool, error) {
	f, err := os.Open(dir)
	if err != nil {
		return false, err
	}
	defer f.Close()
	_, err = f.Readdirnames(1)
	if errors.Is(err, io.EOF) {
		return true, nil
	}
	return false, err
}

// Close releases the root directory. Requests in flight may fail.
func (h *Handler) Close() error { return h.root.Close() }

// clock is a monotonic time in nanoseconds, cheap and allocation-free.
func (h *Handler) clock() int64 { return int64(time.Since(h.start)) }

var (
	allowValue     = []byte("GET, HEAD, OPTIONS")
	optionsHeaders = []exchange.Header{{Name: hAllow, Value: allowValue}}

	textPlain = []byte("text/plain; charset=utf-8")

	body416 = []byte("416 Range Not Satisfiable\n")

	hdrAllow = exchange.Header{Name: hAllow, Value: allowValue}
)

// errorPage answers with krait's error page for status (errpage: the
// format the client's Accept prefers, the request id, no detail).
func errorPage(w exchange.ResponseWriter, r *exchange.Request, status int, extra ...exchange.Header) {
	errpage.Write(w, r, status, extra...)
}

func plain(w exchange.ResponseWriter, status int, headers []exchange.Header, body []byte) {
	if w.WriteHeader(status, nil, headers, int64(len(body))) == nil {
		_, _ = w.Write(body) // the client went away: nothing to do
	}
}

// Serve implements exchange.Handler.
func (h *Handler) Serve(w exchange.ResponseWriter, r *exchange.Request) {
	isHead := false
	switch string(r.Method) {
	case "GET":
	case "HEAD":
		isHead = true
	case "OPTIONS":
		_ = w.WriteHeader(204, nil, optionsHeaders, 0)
		return
	default:
		errorPage(w, r, 405, hdrAllow)
		return
	}
	path := r.Path
	if len(path) < len(h.prefix) || string(path[:len(h.prefix)]) != string(h.prefix) {
		errorPage(w, r, 404) // not routed here: cannot happen behind the router
		return
	}
	var buf [256]byte
	rel, st := cleanPath(buf[:0], path[len(h.prefix):])
	switch st {
	case pathBad:
		errorPage(w, r, 400)
		return
	case pathNotFound:
		errorPage(w, r, 404)
		return
	}
	h.serveFile(w, r, rel, isHead, true)
}

// serveFile answers for the file rel. retry allows one reload when the
// file changed between the cache's check and opening it.
func (h *Handler) serveFile(w exchange.ResponseWriter, r *exchange.Request, rel []byte, isHead, retry bool) {
	e := h.lookup(rel)
	if e == nil {
		errorPage(w, r, 404)
		return
	}
	ae := parseAcceptEncoding(r.Headers)
	rp := e.reps[ae.choose(e.have)]

	pre := evalPreconditions(r.Headers, rp, isHead)
	switch pre.status {
	case 304:
		_ = w.WriteHeader(304, nil, rp.h304, 0)
		return
	case 412:
		errorPage(w, r, 412)
		return
	}

	// A representation held in memory: the hot path.
	if rp.data != nil {
		if pre.rangeVal == nil { // always nil for HEAD
			if w.WriteHeader(200, nil, rp.h200, rp.size) == nil {
				_, _ = w.Write(rp.data)
			}
			return
		}
		h.serveRanges(w, e, rp, nil, pre.rangeVal)
		return
	}

	if isHead {
		_ = w.WriteHeader(200, nil, rp.h200, rp.size)
		return
	}
	f, err := h.root.OpenFile(rp.name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		h.invalidate(e)
		if retry {
			h.serveFile(w, r, rel, isHead, false)
			return
		}
		h.logMiss(rp.name, err)
		errorPage(w, r, 404)
		return
	}
	fi, err := f.Stat()
	if err != nil || !rp.matches(fi) {
		// Changed since the cache looked: the validators are stale.
		h.invalidate(e)
		if retry || err != nil || !fi.Mode().IsRegular() {
			f.Close()
			if retry {
				h.serveFile(w, r, rel, isHead, false)
			} else {
				errorPage(w, r, 404)
			}
			return
		}
		rp = h.newRep(e, rp.coding, fi) // changing again: describe what is sent
	}
	defer f.Close()
	if pre.rangeVal != nil {
		h.serveRanges(w, e, rp, f, pre.rangeVal)
		return
	}
	if w.WriteHeader(200, nil, rp.h200, rp.size) == nil {
		sendBody(w, rp, f, 0, rp.size)
	}
}

// preconditions is the outcome of evaluating the conditional fields of a
// request: a status to answer now (304, 412) or 0, and the Range value to
// honour (nil: send the whole representation).
type preconditions struct {
	status   int
	rangeVal []byte
}

// evalPreconditions follows RFC 9110 §13.2.2: If-Match, else
// If-Unmodified-Since (412); If-None-Match, else If-Modified-Since (304 on
// GET and HEAD); then If-Range decides whether Range is honoured (GET only).
func evalPreconditions(headers []exchange.Header, rp *rep, isHead bool) preconditions {
	var (
		ifMatch, ifNoneMatch      bool // present
		ifMatchOK, ifNoneMatchHit bool
		ims, ius, ifRange, rng    []byte
		rangeCount, ifRangeCount  int
	)
	for i := range headers {
		hd := &headers[i]
		switch len(hd.Name) {
		case 5:
			if httpx.EqualFold(hd.Name, "range") {
				rng = hd.Value
				rangeCount++
			}
		case 8:
			if httpx.EqualFold(hd.Name, "if-match") {
				ifMatch = true
				ifMatchOK = ifMatchOK || etagListMatch(hd.Value, rp.etag, false)
			} else if httpx.EqualFold(hd.Name, "if-range") {
				ifRange = hd.Value
				ifRangeCount++
			}
		case 13:
			if httpx.EqualFold(hd.Name, "if-none-match") {
				ifNoneMatch = true
				ifNoneMatchHit = ifNoneMatchHit || etagListMatch(hd.Value, rp.etag, true)
			}
		case 17:
			if httpx.EqualFold(hd.Name, "if-modified-since") {
				ims = hd.Value
			}
		case 19:
			if httpx.EqualFold(hd.Name, "if-unmodified-since") {
				ius = hd.Value
			}
		}
	}
	// Step 1 and 2.
	if ifMatch {
		if !ifMatchOK {
			return preconditions{status: 412}
		}
	} else if ius != nil {
		if cmp, ok := dateCmp(ius, rp.lastMod, rp.mod); ok && cmp > 0 {
			return preconditions{status: 412}
		}
	}
	// Step 3 and 4 (the method is GET or HEAD here).
	if ifNoneMatch {
		if ifNoneMatchHit {
			return preconditions{status: 304}
		}
	} else if ims != nil {
		if cmp, ok := dateCmp(ims, rp.lastMod, rp.mod); ok && cmp <= 0 {
			return preconditions{status: 304}
		}
	}
	// Step 5: Range only on GET, once, and If-Range must match.
	if isHead || rng == nil || rangeCount > 1 {
		return preconditions{}
	}
	if ifRange != nil {
		if ifRangeCount > 1 || !ifRangeMatches(httpx.TrimOWS(ifRange), rp) {
			return preconditions{}
		}
	}
	return preconditions{rangeVal: rng}
}

// ifRangeMatches: an entity-tag must equal the current one by strong
// comparison; a date must be exactly the Last-Modified (RFC 9110 §13.1.5).
func ifRangeMatches(v []byte, rp *rep) bool {
	if len(v) > 0 && (v[0] == '"' || v[0] == 'W') {
		return len(v) > 0 && v[0] == '"' && string(v) == string(rp.etag)
	}
	cmp, ok := dateCmp(v, rp.lastMod, rp.mod)
	return ok && cmp == 0
}

// serveRanges answers a GET with a Range field: 206 with one part or a
// multipart/byteranges body, 416 when nothing is satisfiable, 200 when
// the field is to be ignored. f is the open file, nil when rp.data holds
// the contents.
func (h *Handler) serveRanges(w exchange.ResponseWriter, e *entry, rp *rep, f *os.File, v []byte) {
	var arr [maxRanges]byteRange
	ranges, res := parseRange(arr[:0], v, rp.size)
	switch res {
	case rangeUnsatisfiable:
		hs := make([]exchange.Header, 0, len(rp.h304)+2)
		hs = append(hs, exchange.Header{Name: hContentType, Value: textPlain})
		hs = append(hs, exchange.Header{Name: hContentRange, Value: []byte("bytes */" + strconv.FormatInt(rp.size, 10))})
		hs = append(hs, rp.h304...)
		plain(w, 416, hs, body416)
		return
	case rangeIgnore:
		if w.WriteHeader(200, nil, rp.h200, rp.size) == nil {
			sendBody(w, rp, f, 0, rp.size)
		}
		return
	}
	if len(ranges) == 1 {
		br := ranges[0]
		hs := make([]exchange.Header, 0, len(rp.h200)+1)
		hs = append(hs, rp.h200...)
		hs = append(hs, exchange.Header{Name: hContentRange, Value: contentRange(nil, br, rp.size)})
		if w.WriteHeader(206, nil, hs, br.length) == nil {
			sendBody(w, rp, f, br.start, br.length)
		}
		return
	}
	// multipart/byteranges (RFC 9110 §14.6): one part per range, in the
	// order asked, each with the representation's Content-Type.
	boundary := newBoundary()
	parts := make([][]byte, len(ranges))
	total := int64(0)
	for i, br := range ranges {
		p := make([]byte, 0, 128)
		p = append(p, "\r\n--"...)
		p = append(p, boundary...)
		p = append(p, "\r\nContent-Type: "...)
		p = append(p, e.ctype...)
		p = append(p, "\r\nContent-Range: "...)
		p = contentRange(p, br, rp.size)
		p = append(p, "\r\n\r\n"...)
		parts[i] = p
		total += int64(len(p)) + br.length
	}
	closing := []byte("\r\n--" + boundary + "--\r\n")
	total += int64(len(closing))
	hs := make([]exchange.Header, 0, len(rp.h200))
	for _, x := range rp.h200 {
		if string(x.Name) == string(hContentType) {
			x.Value = []byte("multipart/byteranges; boundary=" + boundary)
		}
		hs = append(hs, x)
	}
	if w.WriteHeader(206, nil, hs, total) != nil {
		return
	}
	for i, br := range ranges {
		if _, err := w.Write(parts[i]); err != nil {
			return
		}
		if !sendBody(w, rp, f, br.start, br.length) {
			return
		}
	}
	_, _ = w.Write(closing)
}

// sendBody writes length bytes of rp from start, from memory or with
// sendfile; false (after aborting the response) when it failed.
func sendBody(w exchange.ResponseWriter, rp *rep, f *os.File, start, length int64) bool {
	if rp.data != nil {
		_, err := w.Write(rp.data[start : start+length])
		return err == nil
	}
	n, err := w.SendFile(f, start, length)
	if err != nil || n != length {
		w.Abort()
		return false
	}
	return true
}

func contentRange(dst []byte, br byteRange, size int64) []byte {
	dst = append(dst, "bytes "...)
	dst = strconv.AppendInt(dst, br.start, 10)
	dst = append(dst, '-')
	dst = strconv.AppendInt(dst, br.start+br.length-1, 10)
	dst = append(dst, '/')
	return strconv.AppendInt(dst, size, 10)
}

// newBoundary is a random multipart boundary: 120 bits, so it cannot
// plausibly occur in the file.
func newBoundary() string {
	var b [15]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}
