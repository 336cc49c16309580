// Package e2e holds the end-to-end fault tests of fieldsync: real client
// and server processes on real SQLite files, talking HTTP over loopback
// through a fault-injecting proxy, killed with SIGKILL at random points.
// They prove the sync invariants of docs/ARCHITECTURE.md under faults:
// nothing the user was told was saved is lost, every op takes effect on
// the server exactly once and in device order, rejections stop only the
// op they concern, and a server restored from a backup is noticed.
//
// The package's only non-test code is Proxy, an in-process HTTP proxy
// that drops, cuts, stalls or duplicates chosen requests and responses.
//
// Randomised tests print their seed; FIELDSYNC_SEED=<seed> replays one.
package e2e
