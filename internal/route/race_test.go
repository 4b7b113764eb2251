//go:build race

package route

// The race detector makes sync.Pool drop items at random: allocation
// counts mean nothing under it.
const raceEnabled = true
