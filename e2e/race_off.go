//go:build !race

package e2e

// raceEnabled is true when built with -race: the tests then do fewer
// rounds, since everything runs several times slower.
const raceEnabled = false
