//go:build !linux || race

package rawio

// The ordinary path, for systems other than Linux and for race-detector
// builds (see the package documentation).

const rawEnabled = false

type (
	readState  struct{}
	writeState struct{}
)

func (c *Conn) initRaw() {}

func (c *Conn) rawRead(p []byte) (int, error) { return c.nc.Read(p) }

func (c *Conn) rawWritev(a, b []byte) (int, error) {
	return len(a) + len(b), c.writeBuffers(a, b)
}
