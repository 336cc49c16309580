package chaos

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"math/rand/v2"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// workOrder is the bundled schema's entity type the scenarios write.
const workOrder = "work_order"

// fieldStatuses a field worker sets.
var fieldStatuses = []string{"assigned", "in progress", "waiting for parts", "completed on site"}

// worker makes a field worker's ops from one random source: creates,
// status and description changes (manual fields), title changes, comments
// and readings, and photos. Every op it saves is put in its ledger.
type worker struct {
	rng     *rand.Rand
	e       *client.Engine
	records []string
	maxRecs int
	n       int
	// onSave, when set, is told of each saved op and attachment as soon
	// as the engine returned.
	onSave   func(SavedOp)
	onAttach func(SavedAttachment)
}

func newWorker(rng *rand.Rand, e *client.Engine, maxRecs int) *worker {
	return &worker{rng: rng, e: e, maxRecs: maxRecs}
}

func (w *worker) saved(op fieldsync.Op, err error) error {
	if err != nil {
		return err
	}
	if w.onSave != nil {
		w.onSave(SavedOp{ID: op.ID, Device: op.DeviceID, Seq: op.Seq, Type: op.EntityType, Entity: op.EntityID, Kind: string(op.Kind)})
	}
	return nil
}

// create saves a new work order.
func (w *worker) create(ctx context.Context) error {
	w.n++
	op, err := w.e.Create(ctx, workOrder, map[string]any{
		"title": fmt.Sprintf("Order %d-%d", w.n, w.rng.IntN(1e6)), "status": "new",
		"description": "opened on site",
	})
	if err == nil {
		w.records = append(w.records, op.EntityID)
	}
	return w.saved(op, err)
}

// step saves one op: a create while there are few records, otherwise a
// change or an append on a random record.
func (w *worker) step(ctx context.Context) error {
	if len(w.records) == 0 || len(w.records) < w.maxRecs && w.rng.IntN(8) == 0 {
		return w.create(ctx)
	}
	w.n++
	id := w.records[w.rng.IntN(len(w.records))]
	tag := fmt.Sprintf("%d-%d", w.n, w.rng.IntN(1e6))
	switch r := w.rng.IntN(10); {
	case r < 3:
		return w.saved(w.e.Append(ctx, workOrder, id, "comments", "comment "+tag))
	case r < 5:
		return w.saved(w.e.Append(ctx, workOrder, id, "readings", map[string]any{"meter": tag, "value": w.rng.IntN(1000)}))
	case r < 7:
		return w.saved(w.e.Update(ctx, workOrder, id, map[string]any{"status": fieldStatuses[w.rng.IntN(len(fieldStatuses))]}))
	case r < 9:
		return w.saved(w.e.Update(ctx, workOrder, id, map[string]any{"description": "found " + tag}))
	default:
		return w.saved(w.e.Update(ctx, workOrder, id, map[string]any{"title": "Order " + tag}))
	}
}

// photo attaches a new photo to a random record (creating one if none).
func (w *worker) photo(ctx context.Context, kb int) error {
	if len(w.records) == 0 {
		if err := w.create(ctx); err != nil {
			return err
		}
	}
	id := w.records[w.rng.IntN(len(w.records))]
	data := makePhoto(w.rng, kb)
	att, op, err := w.e.Attach(ctx, workOrder, id, client.AttachInput{
		Role: fieldsync.RolePhoto, Name: fmt.Sprintf("site-%d.jpg", w.n), Data: bytes.NewReader(data),
	})
	if err := w.saved(op, err); err != nil {
		return err
	}
	if w.onAttach != nil {
		w.onAttach(SavedAttachment{ID: att.ID, Device: op.DeviceID, SHA256: att.SHA256, Type: workOrder, Entity: id, OpID: op.ID})
	}
	return nil
}

// makePhoto draws a JPEG of roughly kb kilobytes: noise compresses
// poorly, so its size follows its pixel count.
func makePhoto(rng *rand.Rand, kb int) []byte {
	side := 64
	for side*side*3/8 < kb*1024 && side < 1600 {
		side += 32
	}
	img := image.NewRGBA(image.Rect(0, 0, side, side*3/4))
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			v := rng.Uint32()
			img.Set(x, y, color.RGBA{uint8(v), uint8(v >> 8), uint8(v >> 16), 255})
		}
	}
	var buf bytes.Buffer
	_ = jpeg.Encode(&buf, img, &jpeg.Options{Quality: 70})
	return buf.Bytes()
}
