package static

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/krait-server/krait/internal/exchange"
)

// rep is one representation of a file: the file itself (identity) or one
// of its precompressed sidecars. It is immutable once built, so requests
// use it without locks; a change on disk builds a new one.
type rep struct {
	name    string // path below the root: rel + codingExt[coding]
	coding  int
	size    int64
	mod     time.Time
	ino     uint64
	ctime   int64  // status change time (ns): catches rewrites that keep size and mtime
	etag    []byte // `"<mtime ns hex>-<size hex>[-br|-zst|-gz]"`
	lastMod []byte // HTTP date of mod
	data    []byte // the contents when held in memory, else nil (sent with sendfile)

	// Precomputed fields (the engine adds Date, Server and Content-Length).
	h200 []exchange.Header // Content-Type, [Content-Encoding], ETag, Last-Modified, Cache-Control, Accept-Ranges, [Vary], X-Content-Type-Options
	h304 []exchange.Header // ETag, Last-Modified, Cache-Control, [Vary] (RFC 9110 §15.4.5)
}

// entry is what the cache knows of one path: its representations and the
// time they were last checked against the file system.
type entry struct {
	rel   string
	names [numCodings]string // rel + each coding's suffix, present or not
	reps  [numCodings]*rep   // reps[codingIdentity] is never nil
	have  uint8              // bit c set when reps[c] != nil (sidecars)
	ctype []byte
	cc    []byte // Cache-Control
	held  int64  // bytes of file contents held in memory

	checked    atomic.Int64 // h.clock() of the last check
	refreshing atomic.Bool  // one request at a time re-stats an entry
	used       atomic.Bool  // CLOCK bit for eviction
}

// cache maps clean relative paths to entries, bounded in entries and in
// bytes of file contents held.
type cache struct {
	mu   sync.RWMutex
	m    map[string]*entry
	held int64 // sum of entry.held, under mu
}

func (c *cache) get(rel []byte) *entry {
	c.mu.RLock()
	e := c.m[string(rel)] // no allocation: the compiler does not copy the key
	c.mu.RUnlock()
	return e
}

// errNotServable is returned by load for paths that exist but are not
// regular files (directories, devices, FIFOs, sockets).
var errNotServable = errors.New("not a regular file")

// load builds the entry for rel from the file system: the file and its
// sidecars, contents read into memory when small enough. A missing file,
// a directory, a path crossing a symlink that leads outside the root
// (os.Root refuses it) all return an error.
func (h *Handler) load(rel string) (*entry, error) {
	e := &entry{rel: rel}
	for c := range numCodings {
		e.names[c] = rel + codingExt[c]
	}
	ctype := contentType(rel)
	e.ctype = []byte(ctype)
	if fingerprinted(rel) {
		e.cc = immutableCC
	} else {
		e.cc = h.maxAgeCC
	}
	id, err := h.openRep(e.names[codingIdentity])
	if err != nil {
		return nil, err
	}
	reps := [numCodings]*openRep{codingIdentity: id}
	for c := codingBr; c < numCodings; c++ {
		if r, err := h.openRep(e.names[c]); err == nil {
			reps[c] = r
			e.have |= 1 << c
		}
	}
	for c, o := range reps {
		if o == nil {
			continue
		}
		r := h.newRep(e, c, o.fi)
		if o.fi.Size() <= h.fileMax {
			r.data = readAll(o.f, o.fi)
			e.held += int64(len(r.data))
		}
		o.f.Close()
		e.reps[c] = r
	}
	return e, nil
}

type openRep struct {
	f  *os.File
	fi os.FileInfo
}

// openRep opens name below the root if it is a regular file.
// O_NONBLOCK keeps open(2) from blocking on a FIFO; it changes nothing
// for regular files.
func (h *Handler) openRep(name string) (*openRep, error) {
	f, err := h.root.OpenFile(name, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, fmt.Errorf("%s: %w", name, errNotServable)
	}
	return &openRep{f, fi}, nil
}

// readAll reads a small file whole. It returns nil (serve it with
// sendfile instead) when the file changed while being read, so that held
// contents always match the validators computed from fi.
func readAll(f *os.File, fi os.FileInfo) []byte {
	buf := make([]byte, fi.Size())
	if _, err := io.ReadFull(f, buf); err != nil {
		return nil
	}
	var extra [1]byte
	if n, _ := f.Read(extra[:]); n != 0 {
		return nil // grew
	}
	after, err := f.Stat()
	if err != nil || !sameFile(fi, after) {
		return nil
	}
	return buf
}

func inode(fi os.FileInfo) uint64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}

func sameFile(a, b os.FileInfo) bool {
	return a.Size() == b.Size() && a.ModTime().Equal(b.ModTime()) && inode(a) == inode(b) && ctime(a) == ctime(b)
}

// matches reports whether fi still describes r.
func (r *rep) matches(fi os.FileInfo) bool {
	return fi.Mode().IsRegular() && r.size == fi.Size() && r.mod.Equal(fi.ModTime()) && r.ino == inode(fi) && r.ctime == ctime(fi)
}

var (
	hContentType     = []byte("Content-Type")
	hContentEncoding = []byte("Content-Encoding")
	hETag            = []byte("ETag")
	hLastModified    = []byte("Last-Modified")
	hCacheControl    = []byte("Cache-Control")
	hAcceptRanges    = []byte("Accept-Ranges")
	hVary            = []byte("Vary")
	hNoSniff         = []byte("X-Content-Type-Options")
	hContentRange    = []byte("Content-Range")
	hAllow           = []byte("Allow")

	vBytes          = []byte("bytes")
	vAcceptEncoding = []byte("Accept-Encoding")
	vNoSniff        = []byte("nosniff")
	immutableCC     = []byte("public, max-age=31536000, immutable")
)

// newRep builds the representation of coding c of e from its file info,
// with its precomputed header fields.
func (h *Handler) newRep(e *entry, c int, fi os.FileInfo) *rep {
	r := &rep{
		name:   e.names[c],
		coding: c,
		size:   fi.Size(),
		mod:    fi.ModTime(),
		ino:    inode(fi),
		ctime:  ctime(fi),
	}
	tag := make([]byte, 0, 40)
	tag = append(tag, '"')
	tag = strconv.AppendInt(tag, r.mod.UnixNano(), 16)
	tag = append(tag, '-')
	tag = strconv.AppendInt(tag, r.size, 16)
	tag = append(tag, codingTag[c]...)
	tag = append(tag, '"')
	r.etag = tag
	r.lastMod = []byte(r.mod.UTC().Format(httpTimeFormat))

	r.h200 = append(r.h200, exchange.Header{Name: hContentType, Value: e.ctype})
	if c != codingIdentity {
		r.h200 = append(r.h200, exchange.Header{Name: hContentEncoding, Value: []byte(codingName[c])})
	}
	validators := []exchange.Header{
		{Name: hETag, Value: r.etag},
		{Name: hLastModified, Value: r.lastMod},
		{Name: hCacheControl, Value: e.cc},
	}
	r.h200 = append(r.h200, validators...)
	r.h200 = append(r.h200, exchange.Header{Name: hAcceptRanges, Value: vBytes})
	r.h304 = append(r.h304, validators...)
	if e.have != 0 {
		vary := exchange.Header{Name: hVary, Value: vAcceptEncoding}
		r.h200 = append(r.h200, vary)
		r.h304 = append(r.h304, vary)
	}
	r.h200 = append(r.h200, exchange.Header{Name: hNoSniff, Value: vNoSniff})
	return r
}

const httpTimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// unchanged re-stats every name of e and reports whether the file system
// still matches it: same files (size, mtime, inode), no sidecar appeared
// or went away.
func (h *Handler) unchanged(e *entry) bool {
	for c := range numCodings {
		fi, err := h.root.Stat(e.names[c])
		r := e.reps[c]
		switch {
		case err != nil || !fi.Mode().IsRegular():
			if r != nil {
				return false
			}
		case r == nil || !r.matches(fi):
			return false
		}
	}
	return true
}

// lookup returns the entry for rel, loading or revalidating it as needed;
// nil when rel is not a servable file.
func (h *Handler) lookup(rel []byte) *entry {
	e := h.cache.get(rel)
	now := h.clock()
	if e != nil {
		if !e.used.Load() {
			e.used.Store(true)
		}
		if now-e.checked.Load() < int64(h.recheck) {
			return e
		}
		if !e.refreshing.CompareAndSwap(false, true) {
			return e // another request is checking it: serve what we have
		}
		ok := h.unchanged(e)
		if ok {
			e.checked.Store(now)
		}
		e.refreshing.Store(false)
		if ok {
			return e
		}
	}
	return h.reload(string(rel), e)
}

// reload loads rel afresh and replaces old (which may be nil) in the cache.
func (h *Handler) reload(rel string, old *entry) *entry {
	e, err := h.load(rel)
	if err != nil {
		h.logMiss(rel, err)
		h.cache.remove(rel, old)
		return nil
	}
	e.checked.Store(h.clock())
	h.put(e)
	return e
}

func (h *Handler) logMiss(rel string, err error) {
	if errors.Is(err, os.ErrNotExist) {
		return
	}
	// A symlink leading outside the root, a directory, a permission
	// problem: worth a line when debugging a 404.
	h.log.Debug("static: not served", "prefix", h.prefixStr, "path", rel, "err", err)
}

// invalidate drops e from the cache so that the next request reloads it.
func (h *Handler) invalidate(e *entry) { h.cache.remove(e.rel, e) }

func (c *cache) remove(rel string, old *entry) {
	if old == nil {
		return
	}
	c.mu.Lock()
	if cur := c.m[rel]; cur == old {
		delete(c.m, rel)
		c.held -= old.held
	}
	c.mu.Unlock()
}

// put stores e, replacing the current entry for its path, within the
// cache's bounds: entries not used since the last sweep are evicted first
// (CLOCK); contents that still do not fit are dropped from e, which is
// then served with sendfile.
func (h *Handler) put(e *entry) {
	c := &h.cache
	c.mu.Lock()
	defer c.mu.Unlock()
	if cur, ok := c.m[e.rel]; ok {
		delete(c.m, e.rel)
		c.held -= cur.held
	}
	if h.maxEntries <= 0 {
		return
	}
	if e.held > h.maxBytes {
		e.dropData()
	}
	for pass := 0; pass < 2 && (len(c.m) >= h.maxEntries || c.held+e.held > h.maxBytes); pass++ {
		for k, x := range c.m {
			if len(c.m) < h.maxEntries && c.held+e.held <= h.maxBytes {
				break
			}
			if pass == 0 && x.used.Load() {
				x.used.Store(false) // a second chance
				continue
			}
			delete(c.m, k)
			c.held -= x.held
		}
	}
	if c.held+e.held > h.maxBytes {
		e.dropData()
	}
	e.used.Store(true)
	c.m[e.rel] = e
	c.held += e.held
}

// dropData replaces e's representations by copies without contents. Only
// for an entry not yet published.
func (e *entry) dropData() {
	for i, r := range e.reps {
		if r != nil && r.data != nil {
			cp := *r
			cp.data = nil
			e.reps[i] = &cp
		}
	}
	e.held = 0
}
