//go:build unix && (!linux || race)

package rawio

import "syscall"

// ReadFD is read(2) of fd into p, for syscall.RawConn.Read callbacks on
// non-blocking sockets. It returns the Errno (EAGAIN, EINTR, ...)
// unwrapped, and (0, nil) at end of stream. This is the ordinary
// syscall.Read; see the package documentation.
func ReadFD(fd uintptr, p []byte) (int, error) {
	n, err := syscall.Read(int(fd), p)
	if err != nil {
		return 0, err
	}
	return n, nil
}
