package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// HeaderSize is the size of a frame header in bytes.
const HeaderSize = 12

// MaxPayload is the largest payload a frame may declare.
const MaxPayload = 1 << 20

// InitialWindow is the flow-control window each direction of every stream
// starts with, in bytes of DATA payload.
const InitialWindow = 262144

// Type is a frame type.
type Type uint8

// Frame types.
const (
	Hello    Type = 0x01 // W->K, stream 0: handshake tuple
	Request  Type = 0x02 // K->W: marshal environ dict
	Data     Type = 0x03 // both: body bytes
	Response Type = 0x04 // W->K: marshal (status, headers)
	Window   Type = 0x05 // both: uint32 LE credit
	Reset    Type = 0x06 // both: cancel a stream
	SendFile Type = 0x07 // W->K: marshal (path, offset, count)
	Shutdown Type = 0x08 // K->W, stream 0: stop gracefully

	// ASGI (docs/protocol.md, "ASGI").
	Trailers  Type = 0x09 // W->K: marshal list of (bytes, bytes); always END_STREAM
	EarlyHint Type = 0x0A // W->K: marshal list of (bytes, bytes) for a 103 response
	WSAccept  Type = 0x0B // W->K: marshal (subprotocol str|None, headers)
	WSMessage Type = 0x0C // both: one WebSocket message (or a piece, with FlagMore)
	WSClose   Type = 0x0D // both: marshal (code int, reason str)

	// Liveness (protocol version 2).
	Ping Type = 0x0E // K->W, stream 0: up to 8 opaque bytes, echoed by PONG
	Pong Type = 0x0F // W->K, stream 0: the PING's payload

	// Batched dispatch (protocol version 3).
	Recall   Type = 0x10 // K->W: give the stream back if it has not started; empty
	Returned Type = 0x11 // W->K: the recalled stream had not started; always END_STREAM; empty
	Kept     Type = 0x12 // W->K: the recalled stream had started and goes on; empty
)

// MaxPingPayload is the largest PING/PONG payload.
const MaxPingPayload = 8

// FlagEndStream marks the last frame a peer sends on a stream.
const FlagEndStream = 0x01

// Flags allowed on WS_MESSAGE frames only.
const (
	// FlagBinary marks a binary WebSocket message (else text, UTF-8).
	FlagBinary = 0x02
	// FlagMore says the message continues in the next WS_MESSAGE frame.
	FlagMore = 0x04
)

var typeNames = [...]string{"0x00", "HELLO", "REQUEST", "DATA", "RESPONSE", "WINDOW", "RESET", "SENDFILE", "SHUTDOWN",
	"TRAILERS", "EARLY_HINT", "WS_ACCEPT", "WS_MESSAGE", "WS_CLOSE", "PING", "PONG",
	"RECALL", "RETURNED", "KEPT"}

func (t Type) String() string {
	if int(t) < len(typeNames) && t != 0 {
		return typeNames[t]
	}
	return fmt.Sprintf("0x%02x", uint8(t))
}

// Header is a decoded frame header.
type Header struct {
	Length uint32
	Type   Type
	Flags  uint8
	Stream uint32
}

// End reports whether the frame carries FlagEndStream.
func (h Header) End() bool { return h.Flags&FlagEndStream != 0 }

// Binary reports whether a WS_MESSAGE frame carries FlagBinary.
func (h Header) Binary() bool { return h.Flags&FlagBinary != 0 }

// More reports whether a WS_MESSAGE frame carries FlagMore.
func (h Header) More() bool { return h.Flags&FlagMore != 0 }

// ErrProtocol is wrapped by every error caused by a malformed frame or
// payload from the peer.
var ErrProtocol = errors.New("worker protocol error")

// ParseHeader decodes and validates the frame header at the start of b,
// which must hold at least HeaderSize bytes.
func ParseHeader(b []byte) (Header, error) {
	_ = b[HeaderSize-1]
	h := Header{
		Length: binary.LittleEndian.Uint32(b),
		Type:   Type(b[4]),
		Flags:  b[5],
		Stream: binary.LittleEndian.Uint32(b[8:]),
	}
	switch {
	case h.Length > MaxPayload:
		return h, fmt.Errorf("%w: frame length %d exceeds %d", ErrProtocol, h.Length, MaxPayload)
	case h.Type < Hello || h.Type > Kept:
		return h, fmt.Errorf("%w: unknown frame type %s", ErrProtocol, h.Type)
	case h.Flags&^allowedFlags(h.Type) != 0 || b[6] != 0 || b[7] != 0:
		return h, fmt.Errorf("%w: %s frame with reserved bits set (flags 0x%02x, reserved 0x%02x%02x)",
			ErrProtocol, h.Type, h.Flags, b[7], b[6])
	}
	return h, nil
}

func allowedFlags(t Type) uint8 {
	if t == WSMessage {
		return FlagEndStream | FlagBinary | FlagMore
	}
	return FlagEndStream
}

// PutHeader writes a frame header into b[:HeaderSize].
func PutHeader(b []byte, length int, t Type, flags uint8, stream uint32) {
	_ = b[HeaderSize-1]
	binary.LittleEndian.PutUint32(b, uint32(length))
	b[4] = byte(t)
	b[5] = flags
	b[6], b[7] = 0, 0
	binary.LittleEndian.PutUint32(b[8:], stream)
}

// AppendFrame appends a whole frame to b.
func AppendFrame(b []byte, t Type, flags uint8, stream uint32, payload []byte) []byte {
	b = AppendHeader(b, len(payload), t, flags, stream)
	return append(b, payload...)
}

// AppendHeader appends a frame header to b; the payload must follow.
func AppendHeader(b []byte, length int, t Type, flags uint8, stream uint32) []byte {
	var h [HeaderSize]byte
	PutHeader(h[:], length, t, flags, stream)
	return append(b, h[:]...)
}

// AppendWindow appends a WINDOW frame granting credit bytes.
func AppendWindow(b []byte, stream uint32, credit uint32) []byte {
	b = AppendHeader(b, 4, Window, 0, stream)
	return binary.LittleEndian.AppendUint32(b, credit)
}

// BeginFrame appends a header placeholder for a frame whose payload is
// appended next; FinishFrame fills it in. It returns the header's offset.
func BeginFrame(b []byte) ([]byte, int) {
	off := len(b)
	return append(b, make([]byte, HeaderSize)...), off
}

// FinishFrame fills in the header begun at off, the payload being
// everything appended after it.
func FinishFrame(b []byte, off int, t Type, flags uint8, stream uint32) error {
	n := len(b) - off - HeaderSize
	if n > MaxPayload {
		return fmt.Errorf("%s payload of %d bytes exceeds %d", t, n, MaxPayload)
	}
	PutHeader(b[off:], n, t, flags, stream)
	return nil
}

// ParseWindow decodes a WINDOW payload.
func ParseWindow(p []byte) (uint32, error) {
	if len(p) != 4 {
		return 0, fmt.Errorf("%w: WINDOW payload of %d bytes, want 4", ErrProtocol, len(p))
	}
	return binary.LittleEndian.Uint32(p), nil
}
