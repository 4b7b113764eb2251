package h1

import "github.com/krait-server/krait/internal/exchange"

// The engine's writer is a base writer in exchange's wrapper convention: it
// has the optional interfaces and no Unwrap. Handlers reach them through
// exchange.Hijack, exchange.WriteTrailers and exchange.CanHijack.
var (
	_ exchange.ResponseWriter = (*response)(nil)
	_ exchange.Hijacker       = (*response)(nil)
	_ exchange.TrailerWriter  = (*response)(nil)
)
