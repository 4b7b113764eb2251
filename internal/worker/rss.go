package worker

import (
	"bytes"
	"os"
	"strconv"
)

var pageSize = int64(os.Getpagesize())

// ReadRSS returns the resident set size of process pid in bytes, from
// /proc/PID/statm (its second field, in pages): Linux only, no cgo; false
// where there is no /proc or the process is gone.
func ReadRSS(pid int) (int64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, false
	}
	return parseStatm(b)
}

// parseStatm parses the resident field of a statm line ("size resident
// shared text lib data dt") into bytes.
func parseStatm(b []byte) (int64, bool) {
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	pages, err := strconv.ParseInt(string(f[1]), 10, 64)
	if err != nil || pages < 0 {
		return 0, false
	}
	return pages * pageSize, true
}
