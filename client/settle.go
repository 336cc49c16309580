package client

import (
	"context"
	"encoding/json"

	"github.com/fieldsync/fieldsync"
)

// Settle saves a person's decision on a conflict: keep the server's value,
// take the device's, or write a new one, with an optional note. It is an op
// like any other: saved at once, sent when a link appears, settled once on
// the server (a second settlement of the same conflict is rejected).
func (e *Engine) Settle(ctx context.Context, typ, id, field string, s fieldsync.Settle) (fieldsync.Op, error) {
	if s.Choice == fieldsync.ChoiceTakeDevice && s.Op == "" {
		// Name the value the person saw: by the time the server decides,
		// the conflict may hold a newer one.
		v, err := e.Get(ctx, typ, id)
		if err != nil {
			return fieldsync.Op{}, err
		}
		for _, c := range v.Conflicts {
			if c.ID == s.Conflict && c.Field == field && len(c.Theirs) > 0 {
				s.Op = c.Theirs[len(c.Theirs)-1].OpID
			}
		}
	}
	raw, err := json.Marshal(s)
	if err != nil {
		return fieldsync.Op{}, fieldsync.Errorf(fieldsync.EInvalidField, "settlement: %v", err)
	}
	return e.Save(ctx, Change{Kind: fieldsync.KindSettle, Type: typ, EntityID: id, Fields: map[string]json.RawMessage{field: raw}})
}
