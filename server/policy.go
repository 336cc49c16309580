package server

import (
	"slices"
	"strings"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

// Roles of writers, as the conflict policies see them.
const (
	RoleFieldWorker = "field_worker"
	RoleDispatcher  = "dispatcher"
)

// writer is one side of a clash on a field: who wrote the value, in
// which role, when (hybrid logical clock), through which op.
type writer struct {
	By   string // device id, or OfficeDevice
	Role string
	HLC  fieldsync.HLC
	OpID string
}

func (w writer) office() bool { return w.By == OfficeDevice }

// verdict is how a clash on one field is settled.
type verdict int

const (
	keepCurrent  verdict = iota // the value on the server stays; the incoming one is recorded as overridden
	takeIncoming                // the incoming value wins; the server's old value is recorded as overridden
	needsReview                 // a person decides: both values kept in a conflict record
)

func (v verdict) String() string {
	return [...]string{"keep current", "take incoming", "needs review"}[v]
}

// settleClash decides a clash between the value on the server (written by
// cur) and an incoming write (by in) under the field's policy. It is a
// pure, deterministic function with a total tie-breaker, so every server
// instance and every delivery order reach the same verdict for the same
// two writes.
func settleClash(f *schema.Field, cur, in writer) verdict {
	switch f.Policy {
	case schema.PolicyManual:
		return needsReview
	case schema.PolicyServerWins:
		// The office's side wins; between two writers of the same side,
		// the later write (by clock) wins.
		if in.office() != cur.office() {
			if in.office() {
				return takeIncoming
			}
			return keepCurrent
		}
		return lastWriter(cur, in)
	case schema.PolicyDeviceWins:
		if in.office() != cur.office() {
			if in.office() {
				return keepCurrent
			}
			return takeIncoming
		}
		return lastWriter(cur, in)
	case schema.PolicyLastWriter, schema.PolicyServerOwned:
		return lastWriter(cur, in)
	case schema.PolicyRolePriority:
		ci, ii := rank(f.Roles, cur.Role), rank(f.Roles, in.Role)
		switch {
		case ii < ci:
			return takeIncoming
		case ci < ii:
			return keepCurrent
		}
		return lastWriter(cur, in)
	}
	return needsReview // a policy this build cannot apply: a person decides
}

// lastWriter orders two writes by hybrid logical clock, then by writer id,
// then by op id: a total order.
func lastWriter(cur, in writer) verdict {
	if in.HLC != cur.HLC {
		if in.HLC > cur.HLC {
			return takeIncoming
		}
		return keepCurrent
	}
	if c := strings.Compare(in.By, cur.By); c != 0 {
		if c > 0 {
			return takeIncoming
		}
		return keepCurrent
	}
	if in.OpID > cur.OpID {
		return takeIncoming
	}
	return keepCurrent
}

// rank is a role's place in a priority list, strongest first; roles not
// listed come after every listed one.
func rank(roles []string, role string) int {
	if i := slices.Index(roles, role); i >= 0 {
		return i
	}
	return len(roles)
}
