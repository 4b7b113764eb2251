//go:build race

package static

// The race detector allocates on its own: allocation counts mean nothing.
const raceEnabled = true
