package server

import (
	"testing"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/schema"
)

func TestSettleClashEachPolicyBothWays(t *testing.T) {
	office := func(h int64) writer {
		return writer{By: OfficeDevice, Role: RoleDispatcher, HLC: fieldsync.HLC(h), OpID: "op-office"}
	}
	device := func(id string, h int64) writer {
		return writer{By: id, Role: RoleFieldWorker, HLC: fieldsync.HLC(h), OpID: "op-" + id}
	}
	field := func(policy string, roles ...string) *schema.Field {
		return &schema.Field{Type: schema.TypeString, Policy: policy, Roles: roles}
	}
	cases := []struct {
		name    string
		f       *schema.Field
		cur, in writer
		want    verdict
	}{
		{"manual: device after office", field(schema.PolicyManual), office(1), device("a", 2), needsReview},
		{"manual: office after device", field(schema.PolicyManual), device("a", 1), office(2), needsReview},
		{"manual: two devices", field(schema.PolicyManual), device("a", 1), device("b", 2), needsReview},

		{"server-wins: office incoming wins over device", field(schema.PolicyServerWins), device("a", 5), office(1), takeIncoming},
		{"server-wins: device incoming loses to office", field(schema.PolicyServerWins), office(1), device("a", 5), keepCurrent},
		{"server-wins: two devices, later clock wins", field(schema.PolicyServerWins), device("a", 1), device("b", 2), takeIncoming},
		{"server-wins: two devices, earlier clock loses", field(schema.PolicyServerWins), device("a", 2), device("b", 1), keepCurrent},

		{"device-wins: device incoming wins over office", field(schema.PolicyDeviceWins), office(5), device("a", 1), takeIncoming},
		{"device-wins: office incoming loses to device", field(schema.PolicyDeviceWins), device("a", 1), office(5), keepCurrent},
		{"device-wins: office vs office, later wins", field(schema.PolicyDeviceWins), office(1), office(2), takeIncoming},

		{"last-writer-wins: incoming later wins", field(schema.PolicyLastWriter), device("a", 1), office(2), takeIncoming},
		{"last-writer-wins: incoming earlier loses", field(schema.PolicyLastWriter), office(2), device("a", 1), keepCurrent},
		{"last-writer-wins: tie broken by writer id (higher wins)", field(schema.PolicyLastWriter), device("a", 3), device("b", 3), takeIncoming},
		{"last-writer-wins: tie broken by writer id (lower loses)", field(schema.PolicyLastWriter), device("b", 3), device("a", 3), keepCurrent},

		{"role-priority: dispatcher incoming beats worker", field(schema.PolicyRolePriority, RoleDispatcher, RoleFieldWorker), device("a", 9), office(1), takeIncoming},
		{"role-priority: worker incoming loses to dispatcher", field(schema.PolicyRolePriority, RoleDispatcher, RoleFieldWorker), office(1), device("a", 9), keepCurrent},
		{"role-priority: worker first in list wins", field(schema.PolicyRolePriority, RoleFieldWorker, RoleDispatcher), office(9), device("a", 1), takeIncoming},
		{"role-priority: same role, later clock wins", field(schema.PolicyRolePriority, RoleDispatcher), device("a", 1), device("b", 2), takeIncoming},
		{"role-priority: unlisted role loses to listed", field(schema.PolicyRolePriority, RoleDispatcher), office(1), writer{By: "x", Role: "auditor", HLC: 9}, keepCurrent},

		{"unknown policy: a person decides", field("no-such-policy"), device("a", 1), device("b", 2), needsReview},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := settleClash(c.f, c.cur, c.in); got != c.want {
				t.Fatalf("settleClash = %v, want %v", got, c.want)
			}
			// Seen from the other side, the same two writes must give the
			// mirror verdict: whoever won still wins.
			if c.want == needsReview {
				if got := settleClash(c.f, c.in, c.cur); got != needsReview {
					t.Fatalf("swapped: %v, want needs review", got)
				}
				return
			}
			mirror := map[verdict]verdict{keepCurrent: takeIncoming, takeIncoming: keepCurrent}[c.want]
			if got := settleClash(c.f, c.in, c.cur); got != mirror {
				t.Fatalf("swapped sides: %v, want %v", got, mirror)
			}
		})
	}
}
