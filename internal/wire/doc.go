// Package wire is the Go side of krait's worker protocol codec: the 12-byte
// frame header, a batching frame Writer, a chunked frame Reader, and the
// subset of Python's marshal format the protocol uses.
//
// The normative specification is docs/protocol.md. The frame layout, all
// integers little-endian:
//
//	offset size field    meaning
//	0      4    length   payload length (uint32), at most MaxPayload
//	4      1    type     frame type (Hello .. Shutdown; ASGI: Trailers .. WSClose;
//	                     liveness, stream 0: Ping, Pong; batching: Recall,
//	                     Returned, Kept)
//	5      1    flags    bit 0 = FlagEndStream; WS_MESSAGE also bit 1 =
//	                     FlagBinary, bit 2 = FlagMore; other bits must be 0
//	6      2    reserved must be 0
//	8      4    stream   stream id (uint32); 0 = the connection
//
// Marshal subset (K writes dicts of str for WSGI, and for ASGI scopes
// also bytes, tuples, lists, ints and None; W writes marshal.dumps(v, 2)):
//
//	'N' None   'T'/'F' bools   'i' int32 LE
//	's' bytes, 'u' UTF-8 str, 'a'/'A' ASCII str: int32 LE length + bytes
//	'z'/'Z' short ASCII str: uint8 length + bytes
//	'(' tuple and '[' list: int32 LE count + items; ')' small tuple: uint8 count
//	'{' dict: key, value, ... then '0'
//
// Every length a peer declares is checked against the bytes actually
// present (and MaxPayload) before it is used, so hostile input costs at
// most one payload's worth of work and never panics.
package wire
