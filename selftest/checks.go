package selftest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/fieldsync/fieldsync"
	"github.com/fieldsync/fieldsync/client"
	"github.com/fieldsync/fieldsync/protocol"
	"github.com/fieldsync/fieldsync/schema"
)

// maxAnswer caps what the selftest reads of one answer.
const maxAnswer = 80 << 20

// answer is an HTTP answer read whole.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// apiError returns the error the answer carries, "HTTP n: code: message".
func (a answer) apiError() string {
	e := protocol.DecodeErrorBody(a.status, a.body)
	return fmt.Sprintf("HTTP %d %s: %s", a.status, e.Code, e.Message)
}

// do sends one request. version is the protocol header's value; "" leaves
// it out.
func (r *run) do(ctx context.Context, method, path, version string, body any) (answer, error) {
	return r.doWith(ctx, r.hc, method, path, version, body)
}

// doWith sends one request with hc.
func (r *run) doWith(ctx context.Context, hc *http.Client, method, path, version string, body any) (answer, error) {
	var rd io.Reader
	if body != nil {
		data, err := json.Marshal(body)
		if err != nil {
			return answer{}, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequestWithContext(ctx, method, r.base+path, rd)
	if err != nil {
		return answer{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if version != "" {
		req.Header.Set(protocol.VersionHeader, version)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer))
	if err != nil {
		return answer{}, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	return answer{status: resp.StatusCode, header: resp.Header, body: data}, nil
}

var thisVersion = strconv.Itoa(protocol.Version)

// getJSON GETs path and decodes a 200 answer into v.
func (r *run) getJSON(ctx context.Context, path string, v any) error {
	a, err := r.do(ctx, http.MethodGet, path, thisVersion, nil)
	if err != nil {
		return err
	}
	if a.status != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, a.apiError())
	}
	if err := json.Unmarshal(a.body, v); err != nil {
		return fmt.Errorf("GET %s: the answer is not the expected JSON: %v", path, err)
	}
	return nil
}

func (r *run) checkHealth(ctx context.Context) (Outcome, string) {
	a, err := r.do(ctx, http.MethodGet, "/healthz", "", nil)
	if err != nil {
		return failf("%v", err)
	}
	if a.status != http.StatusOK || strings.TrimSpace(string(a.body)) != "ok" {
		return failf("HTTP %d %q, want 200 \"ok\"", a.status, truncate(string(a.body), 60))
	}
	return Pass, ""
}

func (r *run) checkInfo(ctx context.Context) (Outcome, string) {
	var info protocol.Info
	if err := r.getJSON(ctx, protocol.PathInfo, &info); err != nil {
		return failf("%v", err)
	}
	if info.Protocol < 1 || info.MinProtocol < 1 || info.MinProtocol > info.Protocol {
		return failf("protocol %d, min_protocol %d: not a version range", info.Protocol, info.MinProtocol)
	}
	if info.Epoch == "" {
		return failf("no epoch: devices cannot tell this server's history from another")
	}
	r.epoch = info.Epoch
	return Pass, fmt.Sprintf("protocol %d–%d, epoch %s, types %s", info.MinProtocol, info.Protocol, info.Epoch, strings.Join(info.Types, ", "))
}

func (r *run) checkProtocol(ctx context.Context) (Outcome, string) {
	var info protocol.Info
	if err := r.getJSON(ctx, protocol.PathInfo, &info); err != nil {
		return failf("this build's version %d: %v", protocol.Version, err)
	}
	if protocol.Version < info.MinProtocol || protocol.Version > info.Protocol {
		return failf("this build speaks %d; the server speaks %d–%d", protocol.Version, info.MinProtocol, info.Protocol)
	}
	a, err := r.do(ctx, http.MethodGet, protocol.PathInfo, "9999", nil)
	if err != nil {
		return failf("%v", err)
	}
	if code := protocol.DecodeErrorBody(a.status, a.body).Code; a.status != http.StatusBadRequest || code != fieldsync.EUnsupportedVersion {
		return failf("version 9999 answered HTTP %d %s, want 400 %s", a.status, code, fieldsync.EUnsupportedVersion)
	}
	return Pass, fmt.Sprintf("this build speaks %d; version 9999 refused", protocol.Version)
}

// manualField is a field whose clashes a person settles, and three values
// for it: the office's and the device's differ.
type manualField struct {
	name           string
	office, device json.RawMessage
}

func (r *run) checkSchema(ctx context.Context) (Outcome, string) {
	a, err := r.do(ctx, http.MethodGet, protocol.PathSchema, thisVersion, nil)
	if err != nil {
		return failf("%v", err)
	}
	if a.status != http.StatusOK {
		return failf("GET %s: %s", protocol.PathSchema, a.apiError())
	}
	sch, err := schema.Parse(a.body)
	if err != nil {
		return failf("the schema served does not parse: %s", fieldsync.ErrorMessage(err))
	}
	r.schemaRead = true
	t, ok := sch.Type(EntityType)
	if !ok {
		return Pass, fmt.Sprintf("%d types, none %q: the record checks are skipped", len(sch.Types), EntityType)
	}
	if f := t.Fields["title"]; f == nil || f.Type != "string" {
		return Pass, fmt.Sprintf("%s has no string field \"title\": the record checks are skipped", EntityType)
	}
	r.typeOK = true
	names := mapsKeys(t.Fields)
	slices.Sort(names)
	for _, name := range names {
		f := t.Fields[name]
		if f.Policy != schema.PolicyManual || f.Required {
			continue
		}
		switch {
		case f.Type == "enum" && len(f.Values) >= 2:
			r.manual = manualField{name, jsonString(f.Values[0]), jsonString(f.Values[1])}
		case f.Type == "string":
			r.manual = manualField{name, jsonString("selftest office value"), jsonString("selftest device value")}
		default:
			continue
		}
		break
	}
	detail := fmt.Sprintf("%d types; %s", len(sch.Types), EntityType)
	if r.manual.name != "" {
		detail += ", manual field " + r.manual.name
	}
	return Pass, detail
}

func mapsKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}

func jsonString(s string) json.RawMessage {
	data, _ := json.Marshal(s)
	return data
}

// needEngine returns why the engine checks cannot run, "" when they can.
func (r *run) needEngine() string {
	switch {
	case r.engErr != nil:
		return "device engine: " + fieldsync.ErrorMessage(r.engErr)
	case r.eng == nil:
		return "no device engine (the setup failed)"
	}
	return r.needType()
}

// needType returns why the record checks cannot run, "" when they can.
func (r *run) needType() string {
	switch {
	case !r.schemaRead:
		return "the schema could not be read"
	case !r.typeOK:
		return "no usable " + EntityType + " type in the schema"
	}
	return ""
}

// sync runs one engine sync and fails unless it succeeded.
func (r *run) sync(ctx context.Context) (client.Report, error) {
	rep, err := r.eng.Sync(ctx)
	if err != nil {
		return rep, fmt.Errorf("device sync: %s", fieldsync.ErrorMessage(err))
	}
	return rep, nil
}

// create makes a selftest record on the device.
func (r *run) create(ctx context.Context, what string, fields map[string]any) (string, error) {
	if fields == nil {
		fields = map[string]any{}
	}
	fields["title"] = TitlePrefix + what + " " + r.tag
	op, err := r.eng.Create(ctx, EntityType, fields)
	if err != nil {
		return "", fmt.Errorf("device create: %s", fieldsync.ErrorMessage(err))
	}
	r.mine = append(r.mine, op.EntityID)
	return op.EntityID, nil
}

// record reads a record from the server.
func (r *run) record(ctx context.Context, id string) (protocol.Record, error) {
	var h protocol.RecordHistory
	err := r.getJSON(ctx, protocol.PathRecords+EntityType+"/"+url.PathEscape(id), &h)
	return h.Record, err
}

func (r *run) checkRoundTrip(ctx context.Context) (Outcome, string) {
	if why := r.needEngine(); why != "" {
		return Skip, why
	}
	id, err := r.create(ctx, "round trip", nil)
	if err != nil {
		return failf("%v", err)
	}
	title := TitlePrefix + "round trip " + r.tag + " (updated)"
	if _, err := r.eng.Update(ctx, EntityType, id, map[string]any{"title": title}); err != nil {
		return failf("device update: %s", fieldsync.ErrorMessage(err))
	}
	comment := "selftest comment " + r.tag
	appended := false
	if _, err := r.eng.Append(ctx, EntityType, id, "comments", comment); err == nil {
		appended = true
	}
	ops := 2 + b2i(appended)
	rep, err := r.sync(ctx)
	if err != nil {
		return failf("%v", err)
	}
	if rep.Delivered != ops {
		return failf("%d of %d ops delivered (%d rejected, %d to retry)", rep.Delivered, ops, rep.Rejected, rep.Retry)
	}
	rec, err := r.record(ctx, id)
	if err != nil {
		return failf("%v", err)
	}
	view, err := r.eng.Get(ctx, EntityType, id)
	if err != nil {
		return failf("device view: %s", fieldsync.ErrorMessage(err))
	}
	if !jsonEqual(rec.Fields["title"], jsonString(title)) {
		return failf("the server's title is %s, want %q", rec.Fields["title"], title)
	}
	if appended && !strings.Contains(string(rec.Fields["comments"]), comment) {
		return failf("the server's comments %s lack the appended one", truncate(string(rec.Fields["comments"]), 120))
	}
	if view.Version != rec.Version || len(view.Fields) != len(rec.Fields) {
		return failf("device has version %d with %d fields, server %d with %d", view.Version, len(view.Fields), rec.Version, len(rec.Fields))
	}
	for name, v := range rec.Fields {
		if !jsonEqual(view.Fields[name], v) {
			return failf("field %s: device has %s, server %s", name, truncate(string(view.Fields[name]), 60), truncate(string(v), 60))
		}
	}
	return Pass, fmt.Sprintf("%d ops pushed, record %s version %d pulled back identical", ops, rec.Number, rec.Version)
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(a, b json.RawMessage) bool {
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	return reflect.DeepEqual(x, y)
}

// rawRecord is the record the idempotency check pushes by hand, as a
// device of its own.
type rawRecord struct {
	device, id string
	seq        int64
	version    int64
}

func (r *run) push(ctx context.Context, device string, ops ...protocol.Op) ([]protocol.Result, error) {
	a, err := r.doWith(ctx, r.devHC, http.MethodPost, protocol.PathPush, thisVersion, protocol.PushRequest{Device: device, Ops: ops})
	if err != nil {
		return nil, err
	}
	if a.status != http.StatusOK {
		return nil, fmt.Errorf("push: %s", a.apiError())
	}
	var resp protocol.PushResponse
	if err := json.Unmarshal(a.body, &resp); err != nil || len(resp.Results) != len(ops) {
		return nil, fmt.Errorf("push: want %d results, got %s", len(ops), truncate(string(a.body), 120))
	}
	return resp.Results, nil
}

func (r *run) checkIdempotent(ctx context.Context) (Outcome, string) {
	if why := r.needType(); why != "" {
		return Skip, why
	}
	if r.devHC == nil {
		return Skip, "no device to push by hand (the setup failed)"
	}
	raw := &rawRecord{device: r.rawDev, id: uuid.Must(uuid.NewV7()).String(), seq: 1}
	op := protocol.Op{
		ID: uuid.Must(uuid.NewV7()).String(), Seq: 1, Type: EntityType, Entity: raw.id, Kind: string(fieldsync.KindCreate),
		Fields: map[string]json.RawMessage{"title": jsonString(TitlePrefix + "idempotency " + r.tag)},
		At:     time.Now().UnixMilli(),
	}
	first, err := r.push(ctx, raw.device, op)
	if err != nil {
		return failf("first push: %v", err)
	}
	if first[0].Status != string(fieldsync.StatusApplied) {
		return failf("first push answered %s %s: %s", first[0].Status, first[0].Code, first[0].Message)
	}
	r.raw = raw
	raw.version = first[0].Version
	before, err := r.record(ctx, raw.id)
	if err != nil {
		return failf("%v", err)
	}
	again, err := r.push(ctx, raw.device, op)
	if err != nil {
		return failf("second push: %v", err)
	}
	got := again[0]
	if got.Status != string(fieldsync.StatusDuplicate) || got.Recorded == nil || got.Recorded.Status != string(fieldsync.StatusApplied) {
		return failf("the same op again answered %s (recorded %v), want duplicate of applied", got.Status, got.Recorded != nil)
	}
	after, err := r.record(ctx, raw.id)
	if err != nil {
		return failf("%v", err)
	}
	if after.Version != before.Version || after.Seq != before.Seq || !jsonEqual(mustJSON(after.Fields), mustJSON(before.Fields)) {
		return failf("the duplicate changed the record: version %d → %d, feed position %d → %d", before.Version, after.Version, before.Seq, after.Seq)
	}
	return Pass, fmt.Sprintf("answered duplicate; record still version %d", after.Version)
}

func mustJSON(v any) json.RawMessage {
	data, _ := json.Marshal(v)
	return data
}

func (r *run) checkStaleCursor(ctx context.Context) (Outcome, string) {
	if r.epoch == "" {
		return Skip, "the server's epoch is unknown (GET /v1/info failed)"
	}
	other := otherEpoch(r.epoch)
	cur := protocol.Cursor{Epoch: other, Seq: 1}.String()
	a, err := r.do(ctx, http.MethodGet, protocol.PathChanges+"?limit=1&cursor="+url.QueryEscape(cur), thisVersion, nil)
	if err != nil {
		return failf("%v", err)
	}
	if code := protocol.DecodeErrorBody(a.status, a.body).Code; a.status != http.StatusConflict || code != fieldsync.ECursorInvalid {
		if a.status == http.StatusOK {
			return failf("a cursor of epoch %s was served (HTTP 200): a device would trust a history that is not this server's", other)
		}
		return failf("a cursor of epoch %s answered %s, want 409 %s", other, a.apiError(), fieldsync.ECursorInvalid)
	}
	return Pass, "409 " + string(fieldsync.ECursorInvalid)
}

// otherEpoch returns an epoch of the same shape as e that differs from it.
func otherEpoch(e string) string {
	b := []byte(e)
	for i := range b {
		if b[i] == 'f' {
			b[i] = '0'
		} else {
			b[i] = 'f'
		}
	}
	return string(b)
}

func (r *run) checkConflict(ctx context.Context) (Outcome, string) {
	if why := r.needEngine(); why != "" {
		return Skip, why
	}
	m := r.manual
	if m.name == "" {
		return Skip, "the schema has no optional manual-policy enum or string field on " + EntityType
	}
	id, err := r.create(ctx, "conflict", nil)
	if err != nil {
		return failf("%v", err)
	}
	if _, err := r.sync(ctx); err != nil {
		return failf("%v", err)
	}
	view, err := r.eng.Get(ctx, EntityType, id)
	if err != nil {
		return failf("device view: %s", fieldsync.ErrorMessage(err))
	}
	var devVal any
	json.Unmarshal(m.device, &devVal)
	if _, err := r.eng.Update(ctx, EntityType, id, map[string]any{m.name: devVal}); err != nil {
		return failf("device update: %s", fieldsync.ErrorMessage(err))
	}
	a, err := r.do(ctx, http.MethodPatch, protocol.PathRecords+EntityType+"/"+id, thisVersion,
		protocol.EditRequest{Base: view.Version, Fields: map[string]json.RawMessage{m.name: m.office}})
	if err != nil {
		return failf("office edit: %v", err)
	}
	if a.status != http.StatusOK {
		return failf("office edit: %s", a.apiError())
	}
	rep, err := r.sync(ctx)
	if err != nil {
		return failf("%v", err)
	}
	if rep.Conflicts != 1 {
		return failf("the device's edit came back with %d conflicts (%d delivered, %d rejected), want 1", rep.Conflicts, rep.Delivered, rep.Rejected)
	}
	rec, err := r.record(ctx, id)
	if err != nil {
		return failf("%v", err)
	}
	var conflictID string
	for _, c := range rec.Conflicts {
		if c.Field == m.name && c.Open() {
			conflictID = c.ID
		}
	}
	if conflictID == "" || !slices.Contains(rec.Review, m.name) {
		return failf("the server shows no open conflict on %s (review %v)", m.name, rec.Review)
	}
	a, err = r.do(ctx, http.MethodPost, protocol.PathRecords+EntityType+"/"+id+"/settle", thisVersion,
		protocol.SettleRequest{Field: m.name, Conflict: conflictID, Choice: fieldsync.ChoiceKeepServer, Note: "selftest"})
	if err != nil {
		return failf("settle: %v", err)
	}
	var res protocol.Result
	if a.status != http.StatusOK || json.Unmarshal(a.body, &res) != nil || res.Status != string(fieldsync.StatusApplied) {
		return failf("settle answered %s %s", a.apiError(), truncate(string(a.body), 120))
	}
	if _, err := r.sync(ctx); err != nil {
		return failf("after settling: %v", err)
	}
	rec, err = r.record(ctx, id)
	if err != nil {
		return failf("%v", err)
	}
	view, err = r.eng.Get(ctx, EntityType, id)
	if err != nil {
		return failf("device view: %s", fieldsync.ErrorMessage(err))
	}
	if slices.Contains(rec.Review, m.name) || slices.Contains(view.Review, m.name) || len(view.Conflicts) > 0 {
		return failf("still under review after settling: server %v, device %v", rec.Review, view.Review)
	}
	if !jsonEqual(rec.Fields[m.name], m.office) || !jsonEqual(view.Fields[m.name], m.office) {
		return failf("after keeping the server's value, %s is %s on the server and %s on the device, want %s",
			m.name, rec.Fields[m.name], view.Fields[m.name], m.office)
	}
	return Pass, fmt.Sprintf("conflict on %s opened, settled (keep server), device agrees", m.name)
}

func (r *run) checkAttachment(ctx context.Context) (Outcome, string) {
	if why := r.needEngine(); why != "" {
		return Skip, why
	}
	// A device of its own (opened by the setup): an upload the server
	// refuses stays queued on it, and would fail every later sync of the
	// main device.
	eng := r.attach
	if eng == nil {
		return Skip, "no second device (the setup failed)"
	}
	op, err := eng.Create(ctx, EntityType, map[string]any{"title": TitlePrefix + "attachment " + r.tag})
	if err != nil {
		return failf("device create: %s", fieldsync.ErrorMessage(err))
	}
	id := op.EntityID
	r.mine = append(r.mine, id)
	att, _, err := eng.Attach(ctx, EntityType, id, client.AttachInput{
		Role: fieldsync.RolePhoto, Name: "selftest.jpg", Data: bytes.NewReader(testJPEG()),
	})
	if err != nil {
		return failf("device attach: %s", fieldsync.ErrorMessage(err))
	}
	// The first sync sends the ops and the bytes; a second one gives a
	// cut upload one more chance.
	var rep client.Report
	for range 2 {
		if rep, err = eng.Sync(ctx); err == nil && rep.UploadsLeft == 0 {
			break
		}
	}
	if err != nil || rep.UploadsLeft > 0 {
		why := fmt.Sprintf("%d files still to send after two syncs", rep.UploadsLeft)
		if err != nil {
			why = fieldsync.ErrorMessage(err)
		}
		// The engine's message is for a field worker; the server's own
		// answer says what is wrong with it.
		if a, herr := r.do(ctx, http.MethodGet, protocol.PathBlobs+att.SHA256, "", nil); herr == nil && a.status >= 500 {
			why += "; GET " + protocol.PathBlobs + "…: " + a.apiError()
		}
		return failf("%s", why)
	}
	lf, err := eng.LocalFile(ctx, att.ID)
	if err != nil {
		return failf("device file: %s", fieldsync.ErrorMessage(err))
	}
	local, err := os.ReadFile(lf.Path)
	if err != nil {
		return failf("device file: %v", err)
	}
	a, err := r.do(ctx, http.MethodGet, protocol.PathBlobs+att.SHA256, "", nil)
	if err != nil {
		return failf("download: %v", err)
	}
	if a.status != http.StatusOK {
		return failf("download: %s", a.apiError())
	}
	sum := sha256.Sum256(a.body)
	if !bytes.Equal(a.body, local) || hex.EncodeToString(sum[:]) != att.SHA256 {
		return failf("download: %d bytes that differ from the %d sent", len(a.body), len(local))
	}
	rec, err := r.record(ctx, id)
	if err != nil {
		return failf("%v", err)
	}
	status := "missing"
	for _, x := range rec.Attachments {
		if x.ID == att.ID {
			status = x.Status
		}
	}
	if status != fieldsync.AttachmentReady {
		return failf("the record shows the attachment %s, want %s", status, fieldsync.AttachmentReady)
	}
	return Pass, fmt.Sprintf("%d bytes, sha256 %s…, %s", att.Size, att.SHA256[:12], status)
}

// testJPEG is a small generated photo: 160×120, a gradient.
func testJPEG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 160, 120))
	for y := range 120 {
		for x := range 160 {
			img.SetRGBA(x, y, color.RGBA{uint8(x), uint8(y * 2), uint8(x + y), 255})
		}
	}
	var b bytes.Buffer
	if err := jpeg.Encode(&b, img, &jpeg.Options{Quality: 85}); err != nil {
		panic(err) // encoding into memory cannot fail
	}
	return b.Bytes()
}

func (r *run) checkLatency(ctx context.Context) (Outcome, string) {
	times := make([]time.Duration, 0, r.cfg.Trips)
	for range r.cfg.Trips {
		start := time.Now()
		a, err := r.do(ctx, http.MethodGet, "/healthz", "", nil)
		if err != nil {
			return failf("%v", err)
		}
		if a.status != http.StatusOK {
			return failf("GET /healthz: HTTP %d", a.status)
		}
		times = append(times, time.Since(start))
	}
	slices.Sort(times)
	med := times[len(times)/2]
	r.rep.RoundTripMS = float64(med) / float64(time.Millisecond)
	return Pass, fmt.Sprintf("median %s over %d GET /healthz (%s–%s)", roundDur(med), len(times), roundDur(times[0]), roundDur(times[len(times)-1]))
}

func roundDur(d time.Duration) string {
	switch {
	case d >= time.Second:
		return d.Round(time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}

func (r *run) checkThroughput(ctx context.Context) (Outcome, string) {
	if why := r.needEngine(); why != "" {
		return Skip, why
	}
	id, err := r.create(ctx, "throughput", nil)
	if err != nil {
		return failf("%v", err)
	}
	if _, err := r.sync(ctx); err != nil {
		return failf("%v", err)
	}
	n := r.cfg.PushOps
	for i := range n {
		title := fmt.Sprintf("%sthroughput %s #%d", TitlePrefix, r.tag, i+1)
		if _, err := r.eng.Update(ctx, EntityType, id, map[string]any{"title": title}); err != nil {
			return failf("device update: %s", fieldsync.ErrorMessage(err))
		}
	}
	start := time.Now()
	rep, err := r.sync(ctx)
	elapsed := time.Since(start)
	if err != nil {
		return failf("%v", err)
	}
	if rep.Delivered != n {
		return failf("%d of %d ops delivered", rep.Delivered, n)
	}
	r.rep.PushOpsPerS = float64(n) / elapsed.Seconds()
	return Pass, fmt.Sprintf("%d ops in %s: %.0f ops/s (one sync: push and pull)", n, roundDur(elapsed), r.rep.PushOpsPerS)
}

// cleanupRecords deletes every record the selftest made.
func (r *run) cleanupRecords(ctx context.Context) (Outcome, string) {
	var problems []string
	deleted := 0
	if r.eng != nil && len(r.mine) > 0 {
		// Learn the records other devices of the selftest made.
		if _, err := r.sync(ctx); err != nil {
			problems = append(problems, err.Error())
		}
		for _, id := range r.mine {
			if _, err := r.eng.Delete(ctx, EntityType, id); err != nil {
				problems = append(problems, "device delete: "+fieldsync.ErrorMessage(err))
			}
		}
		if rep, err := r.sync(ctx); err != nil {
			problems = append(problems, err.Error())
		} else if rep.Rejected > 0 {
			problems = append(problems, fmt.Sprintf("%d deletes rejected", rep.Rejected))
		}
	}
	if raw := r.raw; raw != nil {
		del := protocol.Op{
			ID: uuid.Must(uuid.NewV7()).String(), Seq: raw.seq + 1, Prev: raw.seq, Type: EntityType, Entity: raw.id,
			Kind: string(fieldsync.KindDelete), Base: raw.version, At: time.Now().UnixMilli(),
		}
		if res, err := r.push(ctx, raw.device, del); err != nil {
			problems = append(problems, err.Error())
		} else if res[0].Status != string(fieldsync.StatusApplied) {
			problems = append(problems, fmt.Sprintf("delete of %s answered %s %s", raw.id, res[0].Status, res[0].Message))
		}
	}
	ids := slices.Clone(r.mine)
	if r.raw != nil {
		ids = append(ids, r.raw.id)
	}
	for _, id := range ids {
		rec, err := r.record(ctx, id)
		switch {
		case err != nil && strings.Contains(err.Error(), string(fieldsync.ENotFound)):
			deleted++ // never reached the server
		case err != nil:
			problems = append(problems, err.Error())
		case !rec.Deleted:
			problems = append(problems, fmt.Sprintf("record %s (%s) is not deleted", rec.Number, id))
		default:
			deleted++
		}
	}
	if len(problems) > 0 {
		return failf("%s", strings.Join(problems, "; "))
	}
	if len(ids) == 0 {
		return Pass, "none made"
	}
	return Pass, fmt.Sprintf("%d records with titles %q…%s deleted", deleted, TitlePrefix, r.tag)
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}
