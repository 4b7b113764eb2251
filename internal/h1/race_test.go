//go:build race

package h1

func init() { raceEnabled = true }
