//go:build !race

package errpage

const raceEnabled = false
