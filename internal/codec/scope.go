package codec

import (
	"encoding/binary"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/httpx"
	"github.com/krait-server/krait/internal/wire"
)

// AppendScope appends the marshal dict of the ASGI scope for r
// (docs/protocol.md, "ASGI"): an "http" scope, or a "websocket" one when
// ws is set. scratch is reusable working memory; the returned scratch may
// have grown.
func AppendScope(b []byte, r *exchange.Request, ws bool, scratch []byte) ([]byte, []byte) {
	b = wire.AppendDictStart(b)
	scheme := schemeOf(r)
	if ws {
		b = wire.AppendStrPair(b, "type", "websocket")
		if scheme == "https" {
			scheme = "wss"
		} else {
			scheme = "ws"
		}
	} else {
		b = wire.AppendStrPair(b, "type", "http")
		b = wire.AppendStrPair(b, "method", r.Method)
	}
	version, _ := httpVersion(r)
	b = wire.AppendStrPair(b, "http_version", version)
	b = wire.AppendStrPair(b, "scheme", scheme)
	raw := requestPath(r.Path)
	scratch = unescapePath(scratch[:0], raw)
	b = wire.AppendStr(b, "path")
	b = wire.AppendUTF8Str(b, scratch)
	b = wire.AppendStr(b, "raw_path")
	b = wire.AppendBytes(b, raw)
	b = wire.AppendStr(b, "query_string")
	b = wire.AppendBytes(b, r.Query)
	b = wire.AppendStrPair(b, "root_path", "")

	b = wire.AppendStr(b, "headers")
	b = wire.AppendListStart(b, len(r.Headers))
	for i := range r.Headers {
		h := &r.Headers[i]
		b = wire.AppendTupleStart(b, 2)
		b = appendLowerBytes(b, h.Name)
		b = wire.AppendBytes(b, h.Value)
	}

	b = wire.AppendStr(b, "client")
	b = appendAddr(b, r.RemoteAddr, r.RemotePort)
	b = wire.AppendStr(b, "server")
	b = appendAddr(b, r.LocalAddr, r.LocalPort)

	if ws {
		b = wire.AppendStr(b, "subprotocols")
		n := 0
		forEachProtocol(r.Headers, func([]byte) { n++ })
		b = wire.AppendListStart(b, n)
		forEachProtocol(r.Headers, func(p []byte) { b = wire.AppendStr(b, p) })
	}
	return wire.AppendDictEnd(b), scratch
}

// appendAddr appends (host, port), or None without a host: a unix socket,
// whose path the request view does not carry.
func appendAddr(b []byte, host string, port int) []byte {
	if host == "" {
		return wire.AppendNone(b)
	}
	b = wire.AppendTupleStart(b, 2)
	b = wire.AppendStr(b, host)
	return wire.AppendInt(b, int64(port))
}

// appendLowerBytes appends name lower-cased as a marshal bytes value.
func appendLowerBytes(b, name []byte) []byte {
	b = append(b, 's')
	b = binary.LittleEndian.AppendUint32(b, uint32(len(name)))
	for _, c := range name {
		b = append(b, httpx.Lower(c))
	}
	return b
}

// forEachProtocol calls fn with each subprotocol the client offered in
// Sec-WebSocket-Protocol fields (comma-separated, whitespace trimmed).
func forEachProtocol(hs []exchange.Header, fn func([]byte)) {
	for i := range hs {
		if httpx.EqualFold(hs[i].Name, "Sec-WebSocket-Protocol") {
			httpx.ForEachElement(hs[i].Value, fn)
		}
	}
}
