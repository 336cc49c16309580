package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
)

// The device commands' shared flags and defaults.
const (
	defaultDeviceDir = "./fieldsync-device"
	defaultType      = "work_order"
	dirUsage         = "the device directory `DIR` (env FIELDSYNC_DIR)"
	serverURLUsage   = "the server `URL`, e.g. http://127.0.0.1:8080 (env FIELDSYNC_SERVER)"
)

func dirFlag(c *command) *string {
	return c.String("dir", envOr("FIELDSYNC_DIR", defaultDeviceDir), dirUsage)
}

// pinFlag is the PIN that unlocks an encrypted device (see fieldsync pin).
func pinFlag(c *command) *string {
	return c.String("pin", "", "the device's `PIN`, when its data is encrypted; a new device given one starts encrypted (env FIELDSYNC_PIN)")
}

func typeFlag(c *command) *string {
	return c.String("type", defaultType, "the entity type `TYPE`")
}

// openDevice opens the device store in dir. Unless create is set, a
// directory without a store is an error that says what to do, rather
// than a new empty device.
func openDevice(ctx context.Context, dir string, create bool, cfg client.Config) (*client.Engine, error) {
	if dir == "" {
		return nil, errors.New("name the device directory with --dir or FIELDSYNC_DIR")
	}
	if !create {
		if _, err := os.Stat(filepath.Join(dir, "device.db")); errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no device store in %s: make a record there with fieldsync create --dir %s, or name another --dir",
				dir, shellQuote(dir))
		}
	}
	cfg.Dir = dir
	if cfg.PIN == "" {
		cfg.PIN = os.Getenv("FIELDSYNC_PIN")
	}
	eng, err := client.Open(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("device %s: %w", dir, err)
	}
	return eng, nil
}

// openRecord opens the device in dir and finds the record ref of type
// typ on it, for the command verb; the caller closes the engine.
func openRecord(ctx context.Context, dir, pin, typ, ref, verb string) (*client.Engine, client.View, error) {
	eng, err := openDevice(ctx, dir, false, client.Config{PIN: pin})
	if err != nil {
		return nil, client.View{}, err
	}
	v, err := resolveRecord(ctx, eng, typ, ref, dir, false)
	if err != nil {
		eng.Close()
		return nil, client.View{}, fmt.Errorf("%s: %w", verb, err)
	}
	return eng, v, nil
}

// resolveRecord finds the record that ref names on the device: its id,
// its server number (WO-1001) or a unique tail of its id (as `list`
// shows it). A deleted record is found only by its id and only when
// deleted is set.
func resolveRecord(ctx context.Context, eng *client.Engine, typ, ref, dir string, deleted bool) (client.View, error) {
	if ref == "" {
		return client.View{}, errors.New("name the record with --id (its id, or its number such as WO-1001)")
	}
	v, err := eng.Get(ctx, typ, ref)
	if err == nil {
		if v.Deleted && !deleted {
			return v, fmt.Errorf("%s is deleted", label(v))
		}
		return v, nil
	}
	if !client.ErrNotFound(err) {
		return v, err
	}
	views, err := eng.List(ctx, typ)
	if err != nil {
		return client.View{}, err
	}
	var tail []client.View
	for _, v := range views {
		if v.Number != "" && strings.EqualFold(v.Number, ref) {
			return v, nil
		}
		if len(ref) >= 4 && strings.HasSuffix(v.ID, ref) {
			tail = append(tail, v)
		}
	}
	switch len(tail) {
	case 1:
		return tail[0], nil
	case 0:
		return client.View{}, fmt.Errorf("no %s %q on this device: see fieldsync list --dir %s (run sync first to get the server's records)",
			typ, ref, shellQuote(dir))
	}
	return client.View{}, fmt.Errorf("%q matches %d %s records: give more of the id", ref, len(tail), typ)
}

// label names a record for people: its number, else a short id.
func label(v client.View) string {
	if v.Number != "" {
		return v.Number
	}
	return shortID(v.ID)
}

// printSaved confirms a saved op: it is on disk when this prints.
func printSaved(w io.Writer, what string, op fieldsync.Op) {
	fmt.Fprintf(w, "saved on this device: %s\n", what)
	fmt.Fprintf(w, "op %s (seq %d), in the queue until the next sync\n", op.ID, op.Seq)
}

// viewJSON is the --json form of a record as the device sees it.
type viewJSON struct {
	Type         string                     `json:"type"`
	ID           string                     `json:"id"`
	Number       string                     `json:"number,omitempty"`
	Version      int64                      `json:"version"`
	State        string                     `json:"state"`
	Pending      int                        `json:"pending"`
	OnlyOnDevice bool                       `json:"only_on_device,omitempty"`
	Deleted      bool                       `json:"deleted,omitempty"`
	Review       []string                   `json:"review,omitempty"`
	Fields       map[string]json.RawMessage `json:"fields"`
	Conflicts    []fieldsync.Conflict       `json:"conflicts,omitempty"` // open, not settled on this device
	Settled      []fieldsync.Conflict       `json:"settled,omitempty"`   // settled on the server
	// Attachments with their state: on_device, uploading, ready, failed.
	Attachments []fieldsync.Attachment `json:"attachments,omitempty"`
}

func toViewJSON(v client.View) viewJSON {
	return viewJSON{
		Type: v.Type, ID: v.ID, Number: v.Number, Version: v.Version, State: v.State, Pending: v.Pending,
		OnlyOnDevice: v.OnlyOnDevice, Deleted: v.Deleted, Review: v.Review, Fields: v.Fields,
		Conflicts: v.Conflicts, Settled: v.Settled, Attachments: v.Attachments,
	}
}

// opJSON is the --json form of one op of the outbox.
type opJSON struct {
	Seq       int64                      `json:"seq"`
	ID        string                     `json:"id"`
	Type      string                     `json:"type"`
	Entity    string                     `json:"entity"`
	Number    string                     `json:"number,omitempty"`
	Kind      string                     `json:"kind"`
	Fields    map[string]json.RawMessage `json:"fields,omitempty"`
	Status    string                     `json:"status"`
	Attempts  int                        `json:"attempts"`
	Code      string                     `json:"code,omitempty"`
	Message   string                     `json:"message,omitempty"`
	Version   int64                      `json:"version,omitempty"`
	LocalTime time.Time                  `json:"local_time"`
	DecidedAt *time.Time                 `json:"decided_at,omitempty"`
	// Overridden lists the values that lost to a field's policy.
	Overridden []overriddenJSON `json:"overridden,omitempty"`
	Trail      []attemptJSON    `json:"trail,omitempty"`
}

type overriddenJSON struct {
	Field  string          `json:"field"`
	Value  json.RawMessage `json:"value"`
	By     string          `json:"by,omitempty"`
	Policy string          `json:"policy"`
}

type attemptJSON struct {
	At      time.Time `json:"at"`
	Outcome string    `json:"outcome"`
	Code    string    `json:"code,omitempty"`
	Message string    `json:"message,omitempty"`
}

func toOpJSON(o client.OpInfo, number string) opJSON {
	if o.Number != "" {
		number = o.Number
	}
	out := opJSON{
		Seq: o.Seq, ID: o.ID, Type: o.Type, Entity: o.EntityID, Number: number, Kind: o.Kind, Fields: o.Fields,
		Status: o.Status, Attempts: o.Attempts, Code: o.Code, Message: o.Message, Version: o.Version,
		LocalTime: o.LocalTime, DecidedAt: timePtr(o.DecidedAt),
	}
	for _, ov := range o.Overridden {
		out.Overridden = append(out.Overridden, overriddenJSON{Field: ov.Field, Value: ov.Value, By: ov.By, Policy: ov.Policy})
	}
	return out
}

// opStatusLabel is the status a person reads.
func opStatusLabel(status string) string {
	switch status {
	case client.OpConflict:
		return "needs review"
	case client.OpQueued:
		return "queued"
	}
	return status
}

// numbers maps record ids to their server numbers, for the types of ops.
func numbers(ctx context.Context, eng *client.Engine, ops []client.OpInfo) map[string]string {
	out := map[string]string{}
	seen := map[string]bool{}
	for _, o := range ops {
		if seen[o.Type] {
			continue
		}
		seen[o.Type] = true
		views, err := eng.List(ctx, o.Type)
		if err != nil {
			continue // numbers are a convenience; ids still show
		}
		for _, v := range views {
			if v.Number != "" {
				out[v.Type+"/"+v.ID] = v.Number
			}
		}
	}
	return out
}

// opRecord names an op's record for people.
func opRecord(o client.OpInfo, nums map[string]string) string {
	if o.Number != "" {
		return o.Number
	}
	if n := nums[o.Type+"/"+o.EntityID]; n != "" {
		return n
	}
	return shortID(o.EntityID)
}
