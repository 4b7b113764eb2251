// Package static serves the files of a directory, from Go, without the
// Python workers: krait's --static URL_PREFIX=DIR. A Handler is an
// exchange.Handler for one mount; the router (internal/route) sends it
// the requests under its prefix, with the raw, percent-encoded path.
//
// # What is served
//
// GET and HEAD of regular files below the directory. OPTIONS is answered
// 204 with Allow: GET, HEAD, OPTIONS; other methods 405 with the same
// Allow. Directories are never listed and have no index file: a path
// naming a directory, or ending in '/', is 404 (a mount serves assets,
// pages are the app's).
//
// # Paths
//
// The path after the prefix is decoded exactly once, segment by segment
// (see cleanPath), and refused with 404 when a decoded segment is empty,
// "." or "..", starts with '.' (dotfiles and dot-directories such as
// .git or .env; the one exception is ".well-known" as the first segment
// below the mount, for RFC 8615 uses such as ACME challenges), or
// contains '/', '\\', NUL or another control byte — so "%2e%2e",
// "%2F" and "%5C" are refused like their plain spellings, and an encoded
// slash cannot make one segment into two. A malformed escape is 400.
// The clean name is opened through an os.Root on the directory, which
// follows symlinks that stay inside it and refuses (404) any that leads
// outside. Only regular files are served: a FIFO, device or socket is 404,
// and files are opened with O_NONBLOCK so a FIFO cannot block a request.
//
// # Responses
//
// Every 200 carries Content-Type (a built-in table for the web's common
// types, then mime.TypeByExtension, then application/octet-stream;
// charset=utf-8 on text types), ETag (strong: the representation's mtime
// in nanoseconds, its size and its coding, like nginx's), Last-Modified,
// Cache-Control, Accept-Ranges: bytes and X-Content-Type-Options: nosniff.
// Cache-Control is "public, max-age=31536000, immutable" for names that
// carry a content hash (Django's ManifestStaticFilesStorage, webpack,
// Vite/Rollup: see fingerprinted) and "public, max-age=N" (--static-max-age;
// "no-cache" when 0) for the rest.
//
// Precompressed sidecars: when FILE.br, FILE.zst or FILE.gz exists next to
// FILE, the response is that sidecar with Content-Encoding, chosen by the
// request's Accept-Encoding weights (server preference br, zstd, gzip on
// ties; identity when the field is absent), and every response for FILE
// carries Vary: Accept-Encoding. Each representation has its own ETag.
//
// Conditional requests follow RFC 9110 §13.2.2: If-Match (strong
// comparison), else If-Unmodified-Since, give 412; If-None-Match (weak
// comparison), else If-Modified-Since, give 304 with ETag, Last-Modified,
// Cache-Control and Vary. Range (GET only, RFC 9110 §14) gives 206 with
// Content-Range for one range, multipart/byteranges for several (in the
// order asked, up to 16), 416 with Content-Range: bytes */SIZE when none
// is satisfiable; If-Range (an exact strong ETag or the exact
// Last-Modified) must match or the whole file is sent. A Range field that
// is malformed, repeated, in another unit, asks for more than 16 ranges,
// or whose ranges add up to more than the file, is ignored (200).
//
// # Cache and sending
//
// Entries (per path: the file and its sidecars, their validators and
// precomputed header fields) are cached, bounded in number
// (Config.CacheEntries) and in bytes of contents held in memory
// (Config.CacheBytes; files up to Config.CacheFileMax are held), with
// CLOCK eviction. An entry is trusted for Config.Recheck and then
// re-stat(2)ed (size, mtime, inode and ctime of every representation,
// sidecars appearing or going away); one request re-checks while the
// others serve the entry they have. ctime makes the check see every
// change of a file's bytes, including a rewrite in place that keeps its
// size and sets its mtime back (cp -p, rsync -t): the new bytes are
// served, but with the same ETag and Last-Modified, which derive from
// size and mtime (like nginx's, so that hosts serving copies of one
// deployment agree), so a client's cached copy still revalidates as
// fresh; fingerprinted names are the cure for that. A file held in memory is answered with one Write
// of bytes that match its validators (a file that changes while being
// read is not held). Larger files are opened per request, checked
// against the entry by fstat, and sent with SendFile (sendfile(2) in the
// HTTP/1.1 engine), so their bytes never cross user space.
//
// # Invariants
//
//   - The hot path (GET or HEAD of a cached file, with or without
//     Accept-Encoding and conditional fields that echo our validators)
//     allocates nothing: the path is decoded into a stack buffer, the
//     cache is looked up with it, and the header fields are precomputed.
//   - Entries and representations are immutable once in the cache; a
//     change on disk replaces them. The cache map is guarded by an
//     RWMutex; the per-entry check time, "refreshing" and CLOCK bits are
//     atomics.
//   - The request's byte slices are used only during Serve.
package static
