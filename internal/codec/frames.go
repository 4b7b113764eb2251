package codec

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"github.com/krait-server/krait/internal/exchange"
	"github.com/krait-server/krait/internal/wire"
)

// Accept decodes a WS_ACCEPT payload: (subprotocol str|None, headers).
// hasSub is false for None. The headers are a field list validated as by
// FieldList ("websocket.accept headers"), dropped fields named in dropped.
func (ps *Parser) Accept(p []byte) (sub []byte, hasSub bool, hdrs []exchange.Header, dropped [][]byte, err error) {
	dec := &ps.dec
	dec.Reset(p)
	if _, n, err := dec.Seq(); err != nil || n != 2 {
		if err == nil {
			err = fmt.Errorf("%w: WS_ACCEPT is a sequence of %d items, want 2", wire.ErrProtocol, n)
		}
		return nil, false, nil, nil, err
	}
	k, err := dec.Peek()
	if err != nil {
		return nil, false, nil, nil, err
	}
	if k == wire.KindNone {
		if err := dec.Skip(); err != nil {
			return nil, false, nil, nil, err
		}
	} else {
		if _, sub, err = dec.Str(); err != nil {
			return nil, false, nil, nil, err
		}
		hasSub = true
	}
	hdrs, dropped, err = ps.fieldList(len(p), "websocket.accept headers")
	return sub, hasSub, hdrs, dropped, err
}

// AppendClose appends a krait-to-worker WS_CLOSE frame (code, reason) for
// stream id.
func AppendClose(b []byte, id uint32, code int, reason string) []byte {
	b, off := wire.BeginFrame(b)
	b = wire.AppendTupleStart(b, 2)
	b = wire.AppendInt(b, int64(code))
	b = wire.AppendUTF8Str(b, reason)
	_ = wire.FinishFrame(b, off, wire.WSClose, 0, id)
	return b
}

// ParseClose decodes a WS_CLOSE payload: (code, reason str|None).
func ParseClose(p []byte) (code int, reason string, err error) {
	dec := wire.NewDecoder(p)
	if _, n, err := dec.Seq(); err != nil || n != 2 {
		if err == nil {
			err = fmt.Errorf("%w: WS_CLOSE is a sequence of %d items, want 2", wire.ErrProtocol, n)
		}
		return 0, "", err
	}
	c, err := dec.Int()
	if err != nil {
		return 0, "", err
	}
	k, err := dec.Peek()
	if err != nil {
		return 0, "", err
	}
	if k == wire.KindNone {
		err = dec.Skip()
	} else {
		var r []byte
		_, r, err = dec.Str()
		reason = string(r)
	}
	return int(c), reason, err
}

// ValidCloseCode reports whether code may be sent in a close frame (RFC
// 6455 §7.4): 1000-1014 but 1004, 1005 and 1006, or 3000-4999.
func ValidCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// MaxCloseReason is the longest close reason a close frame carries: 125
// payload bytes less the 2-byte code.
const MaxCloseReason = 123

// CloseReason cuts reason to MaxCloseReason bytes at a code point
// boundary.
func CloseReason(reason string) string {
	if len(reason) <= MaxCloseReason {
		return reason
	}
	cut := MaxCloseReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// SendFile decodes a SENDFILE payload: (path, offset, count). The path
// aliases p.
func SendFile(p []byte) (path []byte, off, count int64, err error) {
	dec := wire.NewDecoder(p)
	_, n, err := dec.Seq()
	if err != nil || n != 3 {
		return nil, 0, 0, errors.Join(errors.New("malformed SENDFILE payload"), err)
	}
	if _, path, err = dec.Str(); err != nil {
		return nil, 0, 0, err
	}
	if off, err = dec.Int(); err != nil {
		return nil, 0, 0, err
	}
	if count, err = dec.Int(); err != nil {
		return nil, 0, 0, err
	}
	if off < 0 {
		return nil, 0, 0, errors.New("negative SENDFILE offset")
	}
	return path, off, count, nil
}
