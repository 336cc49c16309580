package media

import (
	"bytes"
	"encoding/json"
	"image"
	"image/jpeg"
	"image/png"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// fuzzOptions keeps every fuzzed photo small, so that a header claiming a
// large picture is refused and the fuzzer stays fast.
var fuzzOptions = PhotoOptions{MaxDim: 64, ThumbDim: 16, MaxPixels: 1 << 16, MaxInputBytes: 1 << 20}

// checkRefusal fails unless err is a *fieldsync.Error with a code and a
// message, and nothing was returned beside it.
func checkRefusal(t *testing.T, p Prepared, err error) {
	t.Helper()
	code := fieldsync.ErrorCode(err)
	if code == fieldsync.EInternal || fieldsync.ErrorMessage(err) == "" {
		t.Fatalf("refusal without a code and message: %v", err)
	}
	if p.Data != nil || p.Thumb != nil {
		t.Fatal("bytes returned with an error")
	}
}

// checkJPEG fails unless b is a JPEG of w×h whose longest side is at most max.
func checkJPEG(t *testing.T, b []byte, w, h, max int) {
	t.Helper()
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output is not a valid JPEG: %v", err)
	}
	bd := m.Bounds()
	if w >= 0 && (bd.Dx() != w || bd.Dy() != h) {
		t.Fatalf("JPEG is %v, reported %d×%d", bd, w, h)
	}
	if bd.Dx() < 1 || bd.Dy() < 1 || bd.Dx() > max || bd.Dy() > max {
		t.Fatalf("JPEG is %v; its sides must be 1..%d", bd, max)
	}
}

func FuzzPreparePhoto(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, prep := range []func([]byte) (Prepared, error){
			func(b []byte) (Prepared, error) { return PreparePhoto(bytes.NewReader(b), fuzzOptions) },
			func(b []byte) (Prepared, error) { return PrepareScan(bytes.NewReader(b), fuzzOptions) },
		} {
			p, err := prep(data)
			if err != nil {
				checkRefusal(t, p, err)
				continue
			}
			if p.ContentType != TypeJPEG {
				t.Fatalf("content type %q", p.ContentType)
			}
			checkJPEG(t, p.Data, p.Width, p.Height, fuzzOptions.MaxDim)
			checkJPEG(t, p.Thumb, -1, -1, fuzzOptions.ThumbDim)
		}
	})
}

func FuzzPrepareSignature(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := prepareSignature(bytes.NewReader(data), 1<<20, 1<<16)
		if err != nil {
			checkRefusal(t, p, err)
			return
		}
		checkSignaturePNG(t, p)
	})
}

// checkSignaturePNG fails unless p is a two-colour PNG within the limits.
func checkSignaturePNG(t *testing.T, p Prepared) {
	t.Helper()
	m, err := png.Decode(bytes.NewReader(p.Data))
	if err != nil {
		t.Fatalf("signature is not a valid PNG: %v", err)
	}
	pm, ok := m.(*image.Paletted)
	if !ok || len(pm.Palette) != 2 {
		t.Fatalf("signature decodes as %T, not two colours", m)
	}
	b := pm.Bounds()
	if b.Dx() != p.Width || b.Dy() != p.Height || b.Dx() > MaxSignatureDim || b.Dy() > MaxSignatureDim {
		t.Fatalf("signature is %v, reported %d×%d", b, p.Width, p.Height)
	}
	if p.ContentType != TypePNG || !bytes.Equal(p.Data, p.Thumb) {
		t.Fatal("signature's type or thumbnail is wrong")
	}
}

func FuzzDecodeStrokes(f *testing.F) {
	f.Fuzz(func(t *testing.T, data []byte) {
		strokes, w, h, err := DecodeStrokes(data)
		if err != nil {
			checkRefusal(t, Prepared{}, err)
			switch fieldsync.ErrorCode(err) {
			case fieldsync.EInvalidJSON, fieldsync.EInvalidRequest, fieldsync.ETooLarge:
			default:
				t.Fatalf("unexpected code %s", fieldsync.ErrorCode(err))
			}
			return
		}
		// What is accepted is within the limits and survives a round trip.
		if err := checkStrokes(strokes, w, h); err != nil {
			t.Fatalf("accepted strokes fail the checks: %v", err)
		}
		pts := make([][][2]float64, len(strokes))
		for i, s := range strokes {
			if len(s) == 0 {
				t.Fatal("accepted an empty stroke")
			}
			for _, p := range s {
				pts[i] = append(pts[i], [2]float64{p.X, p.Y})
			}
		}
		again, err := json.Marshal(map[string]any{"w": w, "h": h, "strokes": pts})
		if err != nil {
			t.Fatal(err)
		}
		s2, w2, h2, err := DecodeStrokes(again)
		if err != nil || w2 != w || h2 != h || len(s2) != len(strokes) {
			t.Fatalf("round trip: %v", err)
		}
		for i := range strokes {
			for j := range strokes[i] {
				if s2[i][j] != strokes[i][j] {
					t.Fatalf("round trip changed point %d of stroke %d", j+1, i+1)
				}
			}
		}
		p, err := EncodeSignature(strokes, w, h)
		if err != nil {
			if fieldsync.ErrorMessage(err) != "signature is empty" {
				t.Fatalf("accepted strokes cannot be drawn: %v", err)
			}
			return
		}
		checkSignaturePNG(t, p)
	})
}
