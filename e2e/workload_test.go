package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"

	"github.com/fieldsync/fieldsync/client"
)

// workOrder is the entity type of the bundled schema the tests write.
const workOrder = "work_order"

// statuses a device may set; the same device never clashes with itself.
var statuses = []string{"new", "assigned", "in progress", "waiting for parts", "completed on site"}

// workload makes a field worker's ops on a handful of work orders:
// creates, status and title updates, comments and readings.
type workload struct {
	rng     *rand.Rand
	records []string // entity ids, in creation order
	maxRecs int
	appends float64 // share of appends among non-create ops
	n       int
}

func newWorkload(rng *rand.Rand, maxRecs int, appends float64) *workload {
	return &workload{rng: rng, maxRecs: maxRecs, appends: appends}
}

// next saves one op and returns it as saved.
func (w *workload) next(ctx context.Context, e *client.Engine) (savedOp, error) {
	w.n++
	tag := fmt.Sprintf("%d-%d", w.n, w.rng.IntN(1e6))
	switch {
	case len(w.records) == 0 || len(w.records) < w.maxRecs && w.rng.IntN(10) == 0:
		op, err := e.Create(ctx, workOrder, map[string]any{
			"title":  "Order " + tag,
			"status": "new",
		})
		if err != nil {
			return savedOp{}, err
		}
		w.records = append(w.records, op.EntityID)
		return savedOp{ID: op.ID, Seq: op.Seq, Entity: op.EntityID, Kind: string(op.Kind)}, nil
	default:
		id := w.records[w.rng.IntN(len(w.records))]
		r := w.rng.Float64()
		switch {
		case r < w.appends/2:
			op, err := e.Append(ctx, workOrder, id, "comments", "comment "+tag)
			return saved(op.ID, op.Seq, op.EntityID, string(op.Kind)), err
		case r < w.appends:
			op, err := e.Append(ctx, workOrder, id, "readings", map[string]any{"meter": tag, "value": w.rng.IntN(1000)})
			return saved(op.ID, op.Seq, op.EntityID, string(op.Kind)), err
		case r < w.appends+(1-w.appends)/2:
			op, err := e.Update(ctx, workOrder, id, map[string]any{"status": statuses[w.rng.IntN(len(statuses))]})
			return saved(op.ID, op.Seq, op.EntityID, string(op.Kind)), err
		default:
			op, err := e.Update(ctx, workOrder, id, map[string]any{"title": "Order " + tag, "description": "step " + tag})
			return saved(op.ID, op.Seq, op.EntityID, string(op.Kind)), err
		}
	}
}

func saved(id string, seq int64, entity, kind string) savedOp {
	return savedOp{ID: id, Seq: seq, Entity: entity, Kind: kind}
}

// make saves n ops.
func (w *workload) make(ctx context.Context, e *client.Engine, n int) ([]savedOp, error) {
	out := make([]savedOp, 0, n)
	for range n {
		s, err := w.next(ctx, e)
		if err != nil {
			return out, err
		}
		out = append(out, s)
	}
	return out, nil
}
