// Package compress is the middleware that compresses app responses with
// zstd, brotli or gzip, chosen by the request's Accept-Encoding. It wraps
// an exchange.Handler (Compressor.Wrap), so it works behind any engine;
// install it inside the access log so the log counts the bytes sent.
//
// # Negotiation
//
// Accept-Encoding is read as RFC 9110 §12.5.3 says: weights (q=0
// excludes), "*", "identity", "x-gzip" as gzip, several fields as one list.
// The highest weight wins and equal weights go by the server's order
// (Config.Codings, by default zstd, br, gzip). No Accept-Encoding means
// identity. The request's header slices are read during Serve only; the
// writer keeps just the chosen coding.
//
// # What is compressed
//
// The decision is made once, at the first final WriteHeader (interim 1xx
// responses pass through). A response is eligible when all hold:
//
//   - its status has content and is not a range: not 204, 205, 206, 304;
//   - the handler set no Content-Encoding (already encoded) and no
//     Content-Range, no Cache-Control: no-transform, and no digest of the
//     content (Content-Digest, Repr-Digest, Digest, Content-MD5), which
//     compressing would falsify;
//   - its Content-Type is one of Config.Types (a response without one is
//     not);
//   - its length is unknown (a streamed response) or at least
//     Config.MinSize, and not zero.
//
// An eligible response gets "Vary: Accept-Encoding" (merged into the
// handler's Vary, unless it already lists Accept-Encoding or "*") whether
// or not this request's coding compresses it, since another request's
// would. When compressed it also gets Content-Encoding, loses
// Content-Length (the engine frames it chunked) and Accept-Ranges, and a
// strong ETag becomes weak (W/"..."), as nginx does. A response that is
// not eligible passes through untouched.
//
// HEAD gets the header fields the GET would get, without running an
// encoder (the engine sends no body); when the length is unknown, no
// Content-Encoding, since the GET's body could be anything.
//
// # Streaming, files, trailers, hijacking
//
//   - Flush flushes the encoder (a sync flush) and then the engine, so
//     every byte written before it reaches the client decodable: server-
//     sent events and long polls stay streaming.
//   - SendFile of a compressed response reads the file and feeds the
//     encoder (no sendfile(2) then); of any other response it goes to the
//     engine.
//   - The end of the compressed stream is written when the handler
//     returns, or before the trailers when it calls exchange.WriteTrailers
//     (the writer implements TrailerWriter to do that, then forwards with
//     the helper, per the exchange wrapper convention).
//   - Abort drops the encoder without its tail, so the client sees a cut
//     body. A compressed response that got less body than its declared
//     Content-Length is aborted the same way when the handler returns (the
//     engine would have closed the connection), and one that gets more
//     fails with ErrBodyTooLong.
//   - The writer implements Unwrap and not Hijacker: a hijack happens
//     before any header, so exchange.Hijack reaches the engine's.
//
// # Memory and allocation
//
// Encoders are pooled per coding (sync.Pool) and Reset per response; their
// windows are capped (brotli 256 KiB, zstd 512 KiB), so one compressed
// response holds about 1 MB (gzip) to 2.3 MB (brotli, zstd) of encoder
// state plus an 8 KiB output buffer (and 32 KiB while SendFile is used).
// The writer itself is pooled: a response that is not compressed
// allocates nothing. The writer must not be used after Serve returns, as
// with the engine's own.
package compress
