package workertest

import (
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/krait-server/krait/internal/wire"
)

// The fake ASGI app (EnvInterface=asgi). HTTP routes, by scope["path"]:
//
//	/scope...      the scope as sorted "key=value\n" lines (see formatValue)
//	/trailers      200 with "Trailer: x-sum", body "body", trailers x-sum: 42
//	/early-hint    103 with a Link header, then 200 "hello"
//	/asgi-wait     sends nothing until krait resets the stream (the
//	               client left), then ends with RESET
//
// Every other path is served by the WSGI routes (PATH_INFO and
// QUERY_STRING are derived from the scope), which answer with 2-tuples.
//
// WebSocket routes (scope type "websocket"):
//
//	/ws            accepts (the first subprotocol offered, header x-fake: 1)
//	               and echoes every message with its type; "close-me" makes
//	               it close with 4001 "bye", "big" makes it send a binary
//	               message of 3 MiB in pieces. A close from krait is printed
//	               as "[fake] ws closed CODE REASON" and answered by WS_CLOSE.
//	/ws-deny       closes before accepting (krait answers 403)
//	/ws-denial     a denial response: 401 "denied"
//	/ws-crash      accepts, then RESET (the app failed)
//	/ws-bad        WS_MESSAGE before WS_ACCEPT (a protocol error)
//	/ws-die        accepts, then the process exits

// wsState is a websocket stream's incoming side, guarded by stream.mu.
type wsState struct {
	partial []byte
	msgs    []wsMsg
	closed  bool
	code    int64
	reason  string
}

type wsMsg struct {
	binary bool
	data   []byte
}

// scopeEnv converts a decoded scope into a map, and derives PATH_INFO and
// QUERY_STRING for the WSGI routes.
func scopeEnv(d wire.Dict) (map[string]any, map[string]string) {
	scope := map[string]any{}
	for _, kv := range d {
		scope[kv[0].(string)] = kv[1]
	}
	env := map[string]string{}
	if p, ok := scope["path"].(string); ok {
		env["PATH_INFO"] = p
	}
	if q, ok := scope["query_string"].(wire.Bytes); ok {
		env["QUERY_STRING"] = string(q)
	}
	return scope, env
}

// formatValue renders a decoded marshal value Python-like: 'str', b'bytes',
// ints, None, [lists] and (tuples).
func formatValue(v any) string {
	switch v := v.(type) {
	case nil:
		return "None"
	case string:
		return fmt.Sprintf("%q", v)
	case wire.Bytes:
		return fmt.Sprintf("b%q", string(v))
	case int64:
		return fmt.Sprint(v)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case wire.List:
		parts := make([]string, len(v))
		for i, it := range v {
			parts[i] = formatValue(it)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case wire.Tuple:
		parts := make([]string, len(v))
		for i, it := range v {
			parts[i] = formatValue(it)
		}
		return "(" + strings.Join(parts, ", ") + ")"
	}
	return fmt.Sprintf("%#v", v)
}

// wsFrame records a WS_MESSAGE or WS_CLOSE from krait; s.mu is held.
func (s *stream) wsFrame(h wire.Header, p []byte) {
	switch h.Type {
	case wire.WSMessage:
		s.ws.partial = append(s.ws.partial, p...)
		if !h.More() {
			s.ws.msgs = append(s.ws.msgs, wsMsg{binary: h.Binary(), data: s.ws.partial})
			s.ws.partial = nil
		}
		// Credit at once: the fake buffers whatever krait sends.
		s.rwin += int64(len(p))
		s.send(wire.AppendWindow(nil, s.id, uint32(len(p))))
	case wire.WSClose:
		v, err := wire.Decode(p)
		t, ok := v.(wire.Tuple)
		if err != nil || !ok || len(t) != 2 {
			fmt.Printf("[fake] bad WS_CLOSE %q\n", p)
			return
		}
		s.ws.closed = true
		s.ws.code, _ = t[0].(int64)
		s.ws.reason, _ = t[1].(string)
	}
}

func fieldList(kv ...string) []any {
	l := make([]any, 0, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		l = append(l, [2]any{[]byte(kv[i]), []byte(kv[i+1])})
	}
	return l
}

func asgiResponse(id uint32, status int, headers []any, trailers bool, flags uint8) []byte {
	return wire.AppendFrame(nil, wire.Response, flags, id, marshalTuple(status, headers, trailers))
}

// asgiRun serves the ASGI routes; false hands the request to the WSGI ones.
func (s *stream) asgiRun() bool {
	id := s.id
	path, _ := s.scope["path"].(string)
	if s.scope["type"] == "websocket" {
		s.wsRun(path)
		return true
	}
	if strings.HasPrefix(path, "/scope") {
		path = "/scope"
	}
	switch path {
	case "/scope":
		keys := make([]string, 0, len(s.scope))
		for k := range s.scope {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var b strings.Builder
		for _, k := range keys {
			b.WriteString(k + "=" + formatValue(s.scope[k]) + "\n")
		}
		s.send(asgiResponse(id, 200, fieldList("content-type", "text/plain"), false, 0))
		s.data([]byte(b.String()), true)
	case "/trailers":
		s.send(append(asgiResponse(id, 200, fieldList("content-type", "text/plain", "trailer", "x-sum"), true, 0),
			wire.AppendFrame(nil, wire.Data, 0, id, []byte("body"))...))
		s.send(wire.AppendFrame(nil, wire.Trailers, wire.FlagEndStream, id, marshalValue(nil, fieldList("x-sum", "42"))))
	case "/early-hint":
		s.send(wire.AppendFrame(nil, wire.EarlyHint, 0, id, marshalValue(nil, fieldList("link", "</s.css>; rel=preload"))))
		s.send(append(asgiResponse(id, 200, fieldList("content-type", "text/plain"), false, 0),
			wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, []byte("hello"))...))
	case "/asgi-wait":
		s.mu.Lock()
		for !s.rst {
			s.cond.Wait()
		}
		s.mu.Unlock()
		fmt.Printf("[fake] http.disconnect stream %d\n", id)
		s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("disconnected")))
	default:
		return false
	}
	return true
}

func (s *stream) wsClose(code int, reason string) {
	s.send(wire.AppendFrame(nil, wire.WSClose, wire.FlagEndStream, s.id, marshalTuple(code, reason)))
}

// wsSend sends one message in pieces of at most 1 MiB within the window.
func (s *stream) wsSend(p []byte, binary bool) bool {
	var base uint8
	if binary {
		base = wire.FlagBinary
	}
	for {
		s.mu.Lock()
		for s.win <= 0 && !s.rst && !s.ws.closed && len(p) > 0 {
			s.cond.Wait()
		}
		if s.rst || s.ws.closed {
			s.mu.Unlock()
			return false
		}
		n := min(int64(len(p)), s.win, wire.MaxPayload)
		s.win -= n
		s.mu.Unlock()
		fl := base
		if int(n) < len(p) {
			fl |= wire.FlagMore
		}
		s.send(wire.AppendFrame(nil, wire.WSMessage, fl, s.id, p[:n]))
		p = p[n:]
		if len(p) == 0 {
			return true
		}
	}
}

func (s *stream) wsRun(path string) {
	id := s.id
	switch path {
	case "/ws-deny":
		s.wsClose(1000, "")
		return
	case "/ws-denial":
		s.send(append(asgiResponse(id, 401, fieldList("content-type", "text/plain"), false, 0),
			wire.AppendFrame(nil, wire.Data, wire.FlagEndStream, id, []byte("denied"))...))
		return
	case "/ws-crash":
		s.send(wire.AppendFrame(nil, wire.WSAccept, 0, id, marshalTuple(nil, []any{})))
		s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("app failed")))
		return
	case "/ws-bad":
		s.send(wire.AppendFrame(nil, wire.WSMessage, 0, id, []byte("early")))
		return
	case "/ws-die":
		s.send(wire.AppendFrame(nil, wire.WSAccept, 0, id, marshalTuple(nil, []any{})))
		s.mu.Lock()
		for len(s.ws.msgs) == 0 && !s.ws.closed && !s.rst {
			s.cond.Wait()
		}
		s.mu.Unlock()
		os.Exit(1)
	case "/ws":
	default:
		s.wsClose(1000, "")
		return
	}
	var sub any
	if l, ok := s.scope["subprotocols"].(wire.List); ok && len(l) > 0 {
		sub = l[0]
	}
	s.send(wire.AppendFrame(nil, wire.WSAccept, 0, id, marshalTuple(sub, fieldList("x-fake", "1"))))
	for {
		s.mu.Lock()
		for len(s.ws.msgs) == 0 && !s.ws.closed && !s.rst {
			s.cond.Wait()
		}
		if s.rst {
			s.mu.Unlock()
			s.send(wire.AppendFrame(nil, wire.Reset, 0, id, []byte("reset")))
			return
		}
		if len(s.ws.msgs) == 0 {
			code, reason := s.ws.code, s.ws.reason
			s.mu.Unlock()
			fmt.Printf("[fake] ws closed %d %s\n", code, reason)
			s.wsClose(1000, "")
			return
		}
		m := s.ws.msgs[0]
		s.ws.msgs = s.ws.msgs[1:]
		s.mu.Unlock()
		switch {
		case !m.binary && string(m.data) == "close-me":
			s.wsClose(4001, "bye")
			return
		case !m.binary && string(m.data) == "big":
			s.wsSend([]byte(strings.Repeat("b", 3<<20)), true)
		default:
			s.wsSend(m.data, m.binary)
		}
	}
}
