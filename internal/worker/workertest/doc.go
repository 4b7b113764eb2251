// Package workertest is a fake worker written in Go, for testing krait's
// side of the worker protocol without Python. A test binary whose TestMain
// calls Main becomes the fake worker when started with EnvMode set: point
// a worker's Python at os.Args[0] (the extra arguments are ignored).
//
// Routes (PATH_INFO) of the fake app:
//
//	/            200 "hello"
//	/env         the environ as sorted "KEY=VALUE\n" lines (latin-1)
//	/echo        streams the request body back, honouring both windows
//	/big?N       N bytes of 'x' in 64 KiB DATA frames
//	/chunks      three DATA frames, each on its own write
//	/sendfile?P  the file at path P via SENDFILE
//	/die         the process exits (status 1) without answering
//	/die-holding exits like /die, leaving the socket open in a child that
//	             hangs; it prints "[fake] holder pid N" first
//	/die-mid     RESPONSE and one DATA, then the process exits
//	/reset-mid   RESPONSE and one DATA, then RESET
//	/wait-reset  blocks until krait resets the stream, then ends with RESET
//	/respond?S   the RESPONSE payload is given by scenario S (see respond)
//	/hold-body   credits nothing until a whole window of body arrived, then
//	             drains it and answers "held H total T"
//	/overrun     sends a window plus one byte of DATA without credit
//	/fill-window sends exactly one window of DATA without credit
//
// Like the real adapter it holds krait to the flow-control windows: DATA
// (or WS_MESSAGE) beyond its receive window is a protocol error (stderr
// line "protocol error: ...", exit status 70), and it never sends beyond
// its send window except on /overrun.
//
// It prints "[fake] reset stream N" on stdout when krait resets a stream.
package workertest
