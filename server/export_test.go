package server

// ConflictID exposes conflictID to the external tests, which name a
// conflict by the id the server derives for it.
var ConflictID = conflictID
