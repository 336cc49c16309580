package media

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"math"

	"github.com/fieldsync/fieldsync"
)

// Limits on signatures.
const (
	MaxSignatureDim    = 1024    // longest side of a prepared signature in pixels
	MaxStrokes         = 500     // strokes in one signature
	MaxStrokePoints    = 10_000  // points in all the strokes of one signature
	MaxPadSide         = 10_000  // width or height of a signature pad
	MaxStrokesJSONSize = 1 << 20 // bytes of the JSON form of strokes
)

// inkThreshold is the luminance (0..255) below which a pixel of a signature
// picture counts as ink.
const inkThreshold = 128

// signaturePalette is white paper (index 0) and black ink (index 1).
var signaturePalette = color.Palette{color.Gray{Y: 0xFF}, color.Gray{Y: 0}}

// Point is a position on a signature pad, in the pad's coordinates: x from
// the left edge, y from the top edge, in the pad's own units (usually CSS
// or screen pixels).
type Point struct{ X, Y float64 }

// Stroke is the path of the pen from touching the pad to lifting it. A
// stroke of one point is a dot.
type Stroke []Point

// EncodeSignature draws strokes made on a signature pad of w×h into a
// black-on-white, two-colour PNG of the pad's shape whose longest side is at
// most MaxSignatureDim, with lines max(2, width/200) pixels thick. Thumb is
// the same PNG.
//
// Errors are *fieldsync.Error: EInvalidRequest "signature is empty" when no
// stroke leaves ink on the pad, and for a pad size outside 1..MaxPadSide or a
// point that is not within the pad or at most 10% of its size beyond an edge
// (NaN and infinities included); ETooLarge for more than MaxStrokes strokes
// or MaxStrokePoints points.
func EncodeSignature(strokes []Stroke, w, h int) (Prepared, error) {
	if err := checkStrokes(strokes, w, h); err != nil {
		return Prepared{}, err
	}
	ow, oh := fit(w, h, MaxSignatureDim)
	sx, sy := float64(ow)/float64(w), float64(oh)/float64(h)
	thick := math.Max(2, math.Round(float64(ow)/200))
	m := image.NewPaletted(image.Rect(0, 0, ow, oh), signaturePalette)
	for _, s := range strokes {
		for j := range s {
			a, b := s[j], s[j]
			if j > 0 {
				a = s[j-1]
			} else if len(s) > 1 {
				continue // a stroke of several points is drawn segment by segment
			}
			fillCapsule(m, a.X*sx, a.Y*sy, b.X*sx, b.Y*sy, thick/2)
		}
	}
	return finishSignature(m)
}

// PrepareSignature reads a signature already drawn as a picture (a PNG or
// JPEG; a JPEG's EXIF orientation is applied), scales it so its longest side
// is at most MaxSignatureDim, and turns it into a two-colour PNG: a pixel
// darker than half brightness (after flattening any transparency onto white)
// is ink, every other pixel paper. Thumb is the same PNG.
//
// Errors are those of PreparePhoto with its default limits (the input is
// named "signature" in messages), and EInvalidRequest "signature is empty"
// when no pixel is dark enough to be ink.
func PrepareSignature(r io.Reader) (Prepared, error) {
	return prepareSignature(r, DefaultMaxInputBytes, DefaultMaxPixels)
}

// prepareSignature is PrepareSignature with its limits as parameters.
func prepareSignature(r io.Reader, maxBytes, maxPixels int64) (Prepared, error) {
	img, orientation, err := decodeLimited(r, "signature", maxBytes, maxPixels)
	if err != nil {
		return Prepared{}, err
	}
	b := img.Bounds()
	dw, dh := fit(b.Dx(), b.Dy(), MaxSignatureDim)
	rgba := orient(resize(img, dw, dh), orientation)
	w, h := rgba.Rect.Dx(), rgba.Rect.Dy()
	m := image.NewPaletted(image.Rect(0, 0, w, h), signaturePalette)
	for y := 0; y < h; y++ {
		src := rgba.Pix[y*rgba.Stride : y*rgba.Stride+w*4]
		dst := m.Pix[y*m.Stride : y*m.Stride+w]
		for x := range dst {
			if luma(src[x*4], src[x*4+1], src[x*4+2]) < inkThreshold {
				dst[x] = 1
			}
		}
	}
	return finishSignature(m)
}

// finishSignature refuses a signature with no ink and encodes the rest.
func finishSignature(m *image.Paletted) (Prepared, error) {
	if bytes.IndexByte(m.Pix, 1) < 0 {
		return Prepared{}, fieldsync.Errorf(fieldsync.EInvalidRequest, "signature is empty")
	}
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestCompression}
	if err := enc.Encode(&buf, m); err != nil {
		return Prepared{}, fmt.Errorf("encode signature: %w", err)
	}
	data := buf.Bytes()
	return Prepared{Data: data, Thumb: data, ContentType: TypePNG, Width: m.Rect.Dx(), Height: m.Rect.Dy()}, nil
}

// fillCapsule inks every pixel whose centre lies within r of the segment
// from (ax, ay) to (bx, by). The work is proportional to the inked area,
// clipped to the image, however far outside the image the segment runs.
func fillCapsule(m *image.Paletted, ax, ay, bx, by, r float64) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	y0 := math.Max(0, math.Floor(math.Min(ay, by)-r))
	y1 := math.Min(float64(h-1), math.Ceil(math.Max(ay, by)+r))
	ux, uy := bx-ax, by-ay
	l2 := ux*ux + uy*uy
	for py := int(y0); float64(py) <= y1; py++ {
		yc := float64(py) + 0.5
		lo, hi := math.Inf(1), math.Inf(-1)
		for _, c := range [2][2]float64{{ax, ay}, {bx, by}} { // the round ends
			if d := r*r - (yc-c[1])*(yc-c[1]); d >= 0 {
				s := math.Sqrt(d)
				lo, hi = math.Min(lo, c[0]-s), math.Max(hi, c[0]+s)
			}
		}
		if l2 > 0 { // the body: 0 <= (P-A)·u <= |u|² and |(P-A)×u| <= r|u|
			dy := yc - ay
			l1, h1 := linearRange(ux, dy*uy, 0, l2)
			l2b, h2 := linearRange(uy, -dy*ux, -r*math.Sqrt(l2), r*math.Sqrt(l2))
			if bl, bh := math.Max(l1, l2b), math.Min(h1, h2); bl <= bh {
				lo, hi = math.Min(lo, ax+bl), math.Max(hi, ax+bh)
			}
		}
		if lo > hi {
			continue
		}
		x0 := math.Max(0, math.Ceil(lo-0.5))
		x1 := math.Min(float64(w-1), math.Floor(hi-0.5))
		row := m.Pix[py*m.Stride:]
		for px := int(x0); float64(px) <= x1; px++ {
			row[px] = 1
		}
	}
}

// linearRange returns the range of t with lo <= a*t + b <= hi; an empty
// range has its first value above its second.
func linearRange(a, b, lo, hi float64) (float64, float64) {
	if a == 0 {
		if lo <= b && b <= hi {
			return math.Inf(-1), math.Inf(1)
		}
		return math.Inf(1), math.Inf(-1)
	}
	t0, t1 := (lo-b)/a, (hi-b)/a
	if t0 > t1 {
		t0, t1 = t1, t0
	}
	return t0, t1
}

// checkPad refuses a pad size outside 1..MaxPadSide.
func checkPad(w, h int) error {
	if w < 1 || h < 1 || w > MaxPadSide || h > MaxPadSide {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "signature pad is %d×%d; width and height must be 1..%d", w, h, MaxPadSide)
	}
	return nil
}

// checkStrokes refuses a bad pad size, more than MaxStrokes strokes or
// MaxStrokePoints points in all, and points that are not finite or lie
// further than 10% of the pad's size outside it.
func checkStrokes(strokes []Stroke, w, h int) error {
	if err := checkPad(w, h); err != nil {
		return err
	}
	if len(strokes) > MaxStrokes {
		return fieldsync.Errorf(fieldsync.ETooLarge, "signature has %d strokes; the limit is %d", len(strokes), MaxStrokes)
	}
	n := 0
	for _, s := range strokes {
		n += len(s)
	}
	if n > MaxStrokePoints {
		return fieldsync.Errorf(fieldsync.ETooLarge, "signature has %d points; the limit is %d", n, MaxStrokePoints)
	}
	minX, maxX := -0.1*float64(w), 1.1*float64(w)
	minY, maxY := -0.1*float64(h), 1.1*float64(h)
	for i, s := range strokes {
		for j, p := range s {
			if !(p.X >= minX && p.X <= maxX && p.Y >= minY && p.Y <= maxY) { // false for NaN too
				return fieldsync.Errorf(fieldsync.EInvalidRequest, "signature: point %d of stroke %d (%g, %g) is outside the %d×%d pad", j+1, i+1, p.X, p.Y, w, h)
			}
		}
	}
	return nil
}

// DecodeStrokes parses the JSON form of a signature's strokes:
//
//	{"w":600,"h":200,"strokes":[[[x,y],[x,y],...],...]}
//
// w and h are the pad's size (whole numbers, 1..MaxPadSide); each stroke is
// a list of at least one point, each point a pair of numbers within the pad
// or at most 10% of its size beyond an edge. All three keys are required,
// exactly as written (no other key, no key twice, no nulls, nothing after
// the object). At most MaxStrokesJSONSize bytes, MaxStrokes strokes and
// MaxStrokePoints points in all. It returns the strokes, w and h.
//
// Errors are *fieldsync.Error: EInvalidJSON for JSON that is not of this
// shape, ETooLarge over a limit, EInvalidRequest for a pad size or point out
// of range. An empty list of strokes is valid here; EncodeSignature refuses
// it.
func DecodeStrokes(data []byte) ([]Stroke, int, int, error) {
	if len(data) > MaxStrokesJSONSize {
		return nil, 0, 0, fieldsync.Errorf(fieldsync.ETooLarge, "signature strokes are %s; the limit is %s", byteSize(int64(len(data))), byteSize(MaxStrokesJSONSize))
	}
	w, h, raw, err := decodeStrokesObject(data)
	if err != nil {
		return nil, 0, 0, err
	}
	if len(raw) > MaxStrokes { // before building anything from it
		return nil, 0, 0, fieldsync.Errorf(fieldsync.ETooLarge, "signature has %d strokes; the limit is %d", len(raw), MaxStrokes)
	}
	strokes := make([]Stroke, len(raw))
	for i, rs := range raw {
		if len(rs) == 0 {
			return nil, 0, 0, fieldsync.Errorf(fieldsync.EInvalidJSON, "signature strokes: stroke %d has no points", i+1)
		}
		s := make(Stroke, len(rs))
		for j, rp := range rs {
			if len(rp) != 2 || rp[0] == nil || rp[1] == nil {
				return nil, 0, 0, fieldsync.Errorf(fieldsync.EInvalidJSON, "signature strokes: point %d of stroke %d is not a pair of numbers [x, y]", j+1, i+1)
			}
			s[j] = Point{X: *rp[0], Y: *rp[1]}
		}
		strokes[i] = s
	}
	if err := checkStrokes(strokes, w, h); err != nil {
		return nil, 0, 0, err
	}
	return strokes, w, h, nil
}

// decodeStrokesObject reads the top-level object key by key, so that keys
// match exactly and none is repeated, and refuses anything after it.
func decodeStrokesObject(data []byte) (w, h int, strokes [][][]*float64, err error) {
	bad := func(format string, args ...any) error {
		return fieldsync.Errorf(fieldsync.EInvalidJSON, "signature strokes: "+format, args...)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return 0, 0, nil, bad("not a JSON object")
	}
	var pw, ph *int
	var ps *[][][]*float64
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return 0, 0, nil, bad("%v", jsonProblem(err))
		}
		key, _ := tok.(string)
		if seen[key] {
			return 0, 0, nil, bad("key %q appears twice", key)
		}
		seen[key] = true
		var target any
		switch key {
		case "w":
			target = &pw
		case "h":
			target = &ph
		case "strokes":
			target = &ps
		default:
			return 0, 0, nil, bad("unknown key %q; the keys are w, h and strokes", key)
		}
		if err := dec.Decode(target); err != nil {
			return 0, 0, nil, bad("%s: %v", key, jsonProblem(err))
		}
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return 0, 0, nil, bad("%v", jsonProblem(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return 0, 0, nil, bad("unexpected data after the object")
	}
	switch {
	case pw == nil:
		return 0, 0, nil, bad("w (the pad's width) is missing")
	case ph == nil:
		return 0, 0, nil, bad("h (the pad's height) is missing")
	case ps == nil:
		return 0, 0, nil, bad("strokes is missing")
	}
	return *pw, *ph, *ps, nil
}

// jsonProblem describes a JSON decoding error without Go type names.
func jsonProblem(err error) string {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Sprintf("%s where %s was expected", te.Value, jsonKind(te.Type.Kind().String()))
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "the JSON ends too early"
	}
	return err.Error()
}

// jsonKind names a Go kind the way a JSON author would.
func jsonKind(k string) string {
	switch k {
	case "int", "int64":
		return "a whole number"
	case "float64":
		return "a number"
	case "slice":
		return "a list"
	case "ptr":
		return "a value"
	}
	return k
}
