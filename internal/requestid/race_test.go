//go:build race

package requestid

// raceEnabled: sync.Pool drops items at random under the race detector, so
// allocation counts are not checked there.
const raceEnabled = true
