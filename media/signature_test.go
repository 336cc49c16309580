package media

import (
	"bytes"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"math"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fieldsync/fieldsync"
)

// testSeed returns the seed of a randomised test: FIELDSYNC_SEED when set,
// else the clock. It logs it so a failure can be replayed.
func testSeed(t *testing.T) uint64 {
	t.Helper()
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("FIELDSYNC_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("FIELDSYNC_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (replay with FIELDSYNC_SEED=%d)", seed, seed)
	return seed
}

// handwriting returns strokes that look like a written name on a w×h pad:
// a few words of loops drifting right, sampled every few pixels as a pad
// reports them, plus an underline.
func handwriting(rng *rand.Rand, w, h float64) []Stroke {
	var strokes []Stroke
	x := w * 0.08
	for word := 0; word < 3; word++ {
		var s Stroke
		letters := 3 + rng.IntN(4)
		span := float64(letters) * w * 0.045
		for t := 0.0; t <= 1; t += 1.0 / (float64(letters) * 14) {
			px := x + t*span + w*0.02*math.Sin(t*float64(letters)*2*math.Pi)
			py := h*0.45 - h*0.2*math.Cos(t*float64(letters)*2*math.Pi+rng.Float64()*0.3) + rng.Float64()*2
			s = append(s, Point{X: px, Y: py})
		}
		strokes = append(strokes, s)
		x += span + w*0.05
	}
	var line Stroke
	for px := w * 0.06; px < x; px += 6 {
		line = append(line, Point{X: px, Y: h*0.8 + math.Sin(px/40)*3})
	}
	return append(strokes, line, Stroke{{X: x + 8, Y: h * 0.3}}) // and a dot
}

func decodeSignature(t *testing.T, p Prepared) *image.Paletted {
	t.Helper()
	if p.ContentType != TypePNG || Sniff(p.Data) != TypePNG {
		t.Fatalf("signature is %q, not a PNG", p.ContentType)
	}
	if !bytes.Equal(p.Data, p.Thumb) {
		t.Fatal("a signature's thumbnail should be the signature itself")
	}
	m, err := png.Decode(bytes.NewReader(p.Data))
	if err != nil {
		t.Fatal(err)
	}
	pm, ok := m.(*image.Paletted)
	if !ok || len(pm.Palette) != 2 {
		t.Fatalf("signature decodes as %T, not a 2-colour paletted image", m)
	}
	if b := pm.Bounds(); b.Dx() != p.Width || b.Dy() != p.Height {
		t.Fatalf("signature is %v, reported %d×%d", b, p.Width, p.Height)
	}
	return pm
}

func ink(m *image.Paletted, x, y int) bool {
	r, _, _, _ := m.At(x, y).RGBA()
	return r < 0x8000
}

func TestEncodeSignatureTypical(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 1))
	strokes := handwriting(rng, 600, 200)
	n := 0
	for _, s := range strokes {
		n += len(s)
	}
	p, err := EncodeSignature(strokes, 600, 200)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("a typical signature (%d strokes, %d points) on a 600×200 pad: %d bytes of PNG", len(strokes), n, len(p.Data))
	if len(p.Data) >= 8<<10 {
		t.Errorf("signature PNG is %d bytes; it should be under 8 KiB", len(p.Data))
	}
	m := decodeSignature(t, p)
	if p.Width != 600 || p.Height != 200 {
		t.Fatalf("signature is %d×%d, want the pad's 600×200", p.Width, p.Height)
	}
	for _, s := range strokes {
		for _, pt := range s {
			if x, y := int(pt.X), int(pt.Y); x >= 0 && y >= 0 && x < 600 && y < 200 && !ink(m, x, y) {
				t.Fatalf("no ink under the point (%g, %g)", pt.X, pt.Y)
			}
		}
	}
	if ink(m, 599, 0) || ink(m, 0, 199) {
		t.Fatal("ink in an empty corner")
	}
}

func TestEncodeSignatureLineThickness(t *testing.T) {
	for _, c := range []struct {
		w, h  int
		thick int // expected ink rows across a horizontal line
	}{
		{600, 200, 3},
		{300, 100, 2},
		{1000, 300, 5},
		{4000, 1000, 5}, // drawn at 1024×256: thickness follows the output size
	} {
		for _, off := range []float64{0, 0.25, 0.5} { // on a pixel edge, between, on a pixel centre
			t.Run(fmt.Sprintf("%dx%d/+%g", c.w, c.h, off), func(t *testing.T) {
				y := float64(c.h)/2 + off*float64(c.h)/float64(min(c.h, 1024*c.h/c.w))
				p, err := EncodeSignature([]Stroke{{{X: 0, Y: y}, {X: float64(c.w), Y: y}}}, c.w, c.h)
				if err != nil {
					t.Fatal(err)
				}
				m := decodeSignature(t, p)
				rows := 0
				for yy := 0; yy < p.Height; yy++ {
					if ink(m, p.Width/2, yy) {
						rows++
					}
				}
				// Where the line falls between pixels decides one row more or less.
				if rows != c.thick && rows != c.thick+1 {
					t.Fatalf("line is %d pixels thick, want %d or %d", rows, c.thick, c.thick+1)
				}
			})
		}
	}
}

func TestEncodeSignatureScalesLargePads(t *testing.T) {
	p, err := EncodeSignature([]Stroke{{{X: 100, Y: 100}, {X: 2900, Y: 900}}}, 3000, 1000)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeSignature(t, p)
	if p.Width != 1024 || p.Height != 341 {
		t.Fatalf("signature is %d×%d, want 1024×341", p.Width, p.Height)
	}
	if !ink(m, 512, 170) {
		t.Fatal("no ink in the middle of the diagonal")
	}
}

func TestEncodeSignatureRefuses(t *testing.T) {
	tooMany := make([]Stroke, MaxStrokes+1)
	for i := range tooMany {
		tooMany[i] = Stroke{{X: 1, Y: 1}}
	}
	tooLong := []Stroke{make(Stroke, MaxStrokePoints+1)}
	for _, c := range []struct {
		name    string
		strokes []Stroke
		w, h    int
		code    fieldsync.Code
		msg     string
	}{
		{"nil", nil, 600, 200, fieldsync.EInvalidRequest, "signature is empty"},
		{"empty strokes", []Stroke{{}, {}}, 600, 200, fieldsync.EInvalidRequest, "signature is empty"},
		{"ink only off the pad", []Stroke{{{X: -50, Y: -15}, {X: -40, Y: -10}}}, 600, 200, fieldsync.EInvalidRequest, "signature is empty"},
		{"far outside", []Stroke{{{X: 10, Y: 10}, {X: 1e300, Y: 10}}}, 600, 200, fieldsync.EInvalidRequest, "point 2 of stroke 1 (1e+300, 10) is outside the 600×200 pad"},
		{"NaN", []Stroke{{{X: math.NaN(), Y: 10}}}, 600, 200, fieldsync.EInvalidRequest, "point 1 of stroke 1 (NaN, 10) is outside"},
		{"infinity", []Stroke{{{X: 1, Y: math.Inf(-1)}}}, 600, 200, fieldsync.EInvalidRequest, "is outside"},
		{"zero pad", []Stroke{{{X: 1, Y: 1}}}, 0, 200, fieldsync.EInvalidRequest, "signature pad is 0×200; width and height must be 1..10000"},
		{"huge pad", []Stroke{{{X: 1, Y: 1}}}, 600, 10001, fieldsync.EInvalidRequest, "signature pad is 600×10001"},
		{"too many strokes", tooMany, 600, 200, fieldsync.ETooLarge, "signature has 501 strokes; the limit is 500"},
		{"too many points", tooLong, 600, 200, fieldsync.ETooLarge, "signature has 10001 points; the limit is 10000"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := EncodeSignature(c.strokes, c.w, c.h)
			wantCode(t, err, c.code, c.msg)
		})
	}
}

func TestEncodeSignatureDot(t *testing.T) {
	p, err := EncodeSignature([]Stroke{{{X: 300, Y: 100}}}, 600, 200)
	if err != nil {
		t.Fatal(err)
	}
	m := decodeSignature(t, p)
	if !ink(m, 300, 100) || ink(m, 310, 100) {
		t.Fatal("a one-point stroke should leave a small dot")
	}
}

// drawnSignature returns a w×h picture of a signature: dark grey strokes
// with a soft edge on slightly uneven paper, as a scanner or camera gives.
func drawnSignature(w, h int, transparent bool) image.Image {
	m := image.NewNRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			d := math.Abs(float64(y) - (float64(h)/2 + float64(h)/4*math.Sin(float64(x)/float64(w)*6*math.Pi)))
			paper := color.NRGBA{235 + uint8(x%7), 235, 230, 255}
			switch {
			case d < float64(h)/40+1:
				paper = color.NRGBA{30, 30, 40, 255}
			case d < float64(h)/40+3:
				paper = color.NRGBA{150, 150, 160, 255}
			case transparent:
				paper = color.NRGBA{}
			}
			m.SetNRGBA(x, y, paper)
		}
	}
	return m
}

func TestPrepareSignature(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name   string
		data   []byte
		ww, wh int
	}{
		{"PNG", encPNG(t, drawnSignature(600, 200, false)), 600, 200},
		{"transparent PNG", encPNG(t, drawnSignature(600, 200, true)), 600, 200},
		{"large JPEG", encJPEG(t, drawnSignature(2400, 800, false), 85), 1024, 341},
		{"rotated JPEG", afterSOI(encJPEG(t, drawnSignature(200, 600, false), 85), exifSegment(6, false, "Phone")), 600, 200},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := PrepareSignature(bytes.NewReader(c.data))
			if err != nil {
				t.Fatal(err)
			}
			m := decodeSignature(t, p)
			if p.Width != c.ww || p.Height != c.wh {
				t.Fatalf("signature is %d×%d, want %d×%d", p.Width, p.Height, c.ww, c.wh)
			}
			inked := 0
			for _, v := range m.Pix {
				if v == 1 {
					inked++
				}
			}
			if frac := float64(inked) / float64(len(m.Pix)); frac < 0.01 || frac > 0.2 {
				t.Fatalf("%.1f%% of the signature is ink", frac*100)
			}
			t.Logf("%d×%d signature: %d bytes", p.Width, p.Height, len(p.Data))
		})
	}
	blank := image.NewGray(image.Rect(0, 0, 300, 100))
	for i := range blank.Pix {
		blank.Pix[i] = 240
	}
	_, err := PrepareSignature(bytes.NewReader(encPNG(t, blank)))
	wantCode(t, err, fieldsync.EInvalidRequest, "signature is empty")
	_, err = PrepareSignature(strings.NewReader("not an image"))
	wantCode(t, err, fieldsync.EUnsupportedMedia, "signature is not a JPEG or PNG image")
	_, err = PrepareSignature(bytes.NewReader(pngHeader(20000, 20000)))
	wantCode(t, err, fieldsync.ETooLarge, "signature is 400 megapixels (20000×20000); the limit is 64")
}

func TestDecodeStrokes(t *testing.T) {
	strokes, w, h, err := DecodeStrokes([]byte(`{"w":600,"h":200,"strokes":[[[10,20],[30.5,40]],[[599,199]],[[-60,-20],[660,220]]]}`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Stroke{{{10, 20}, {30.5, 40}}, {{599, 199}}, {{-60, -20}, {660, 220}}}
	if w != 600 || h != 200 || fmt.Sprint(strokes) != fmt.Sprint(want) {
		t.Fatalf("got %v %d×%d", strokes, w, h)
	}
	// Key order and white space do not matter; an empty signature is well formed.
	if s, w, h, err := DecodeStrokes([]byte(" {\n \"strokes\": [], \"h\": 1, \"w\": 10000 }\n")); err != nil || len(s) != 0 || w != 10000 || h != 1 {
		t.Fatalf("got %v %d×%d %v", s, w, h, err)
	}
}

// strokesJSON builds the JSON form of n strokes of k points each.
func strokesJSON(n, k int) string {
	var b strings.Builder
	b.WriteString(`{"w":600,"h":200,"strokes":[`)
	for i := 0; i < n; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteByte('[')
		for j := 0; j < k; j++ {
			if j > 0 {
				b.WriteByte(',')
			}
			b.WriteString("[1,2]")
		}
		b.WriteByte(']')
	}
	b.WriteString("]}")
	return b.String()
}

func TestDecodeStrokesStrict(t *testing.T) {
	for _, c := range []struct {
		name string
		in   string
		code fieldsync.Code
		msg  string
	}{
		{"empty", ``, fieldsync.EInvalidJSON, "not a JSON object"},
		{"array", `[[[1,2]]]`, fieldsync.EInvalidJSON, "not a JSON object"},
		{"unknown key", `{"w":600,"h":200,"strokes":[],"pen":"blue"}`, fieldsync.EInvalidJSON, `unknown key "pen"`},
		{"key in other case", `{"W":600,"h":200,"strokes":[]}`, fieldsync.EInvalidJSON, `unknown key "W"`},
		{"duplicate key", `{"w":600,"h":200,"w":700,"strokes":[]}`, fieldsync.EInvalidJSON, `key "w" appears twice`},
		{"missing w", `{"h":200,"strokes":[]}`, fieldsync.EInvalidJSON, "w (the pad's width) is missing"},
		{"missing h", `{"w":200,"strokes":[]}`, fieldsync.EInvalidJSON, "h (the pad's height) is missing"},
		{"missing strokes", `{"w":600,"h":200}`, fieldsync.EInvalidJSON, "strokes is missing"},
		{"null w", `{"w":null,"h":200,"strokes":[]}`, fieldsync.EInvalidJSON, "w (the pad's width) is missing"},
		{"null strokes", `{"w":600,"h":200,"strokes":null}`, fieldsync.EInvalidJSON, "strokes is missing"},
		{"fractional w", `{"w":600.5,"h":200,"strokes":[]}`, fieldsync.EInvalidJSON, "w: number 600.5 where a whole number was expected"},
		{"string h", `{"w":600,"h":"200","strokes":[]}`, fieldsync.EInvalidJSON, "h: string where a whole number was expected"},
		{"zero w", `{"w":0,"h":200,"strokes":[]}`, fieldsync.EInvalidRequest, "signature pad is 0×200"},
		{"negative h", `{"w":600,"h":-1,"strokes":[]}`, fieldsync.EInvalidRequest, "signature pad is 600×-1"},
		{"huge w", `{"w":10001,"h":200,"strokes":[]}`, fieldsync.EInvalidRequest, "signature pad is 10001×200"},
		{"strokes object", `{"w":600,"h":200,"strokes":{}}`, fieldsync.EInvalidJSON, "strokes: object where a list was expected"},
		{"point of three", `{"w":600,"h":200,"strokes":[[[1,2,3]]]}`, fieldsync.EInvalidJSON, "point 1 of stroke 1 is not a pair of numbers [x, y]"},
		{"point of one", `{"w":600,"h":200,"strokes":[[[1,2],[1]]]}`, fieldsync.EInvalidJSON, "point 2 of stroke 1 is not a pair"},
		{"null coordinate", `{"w":600,"h":200,"strokes":[[[1,null]]]}`, fieldsync.EInvalidJSON, "point 1 of stroke 1 is not a pair"},
		{"null point", `{"w":600,"h":200,"strokes":[[null]]}`, fieldsync.EInvalidJSON, "point 1 of stroke 1 is not a pair"},
		{"string coordinate", `{"w":600,"h":200,"strokes":[[["1",2]]]}`, fieldsync.EInvalidJSON, "strokes: string where a number was expected"},
		{"huge number", `{"w":600,"h":200,"strokes":[[[1e999,2]]]}`, fieldsync.EInvalidJSON, "strokes: number 1e999 where a number was expected"},
		{"empty stroke", `{"w":600,"h":200,"strokes":[[[1,2]],[]]}`, fieldsync.EInvalidJSON, "stroke 2 has no points"},
		{"null stroke", `{"w":600,"h":200,"strokes":[null]}`, fieldsync.EInvalidJSON, "stroke 1 has no points"},
		{"left of the pad", `{"w":600,"h":200,"strokes":[[[-60.1,2]]]}`, fieldsync.EInvalidRequest, "point 1 of stroke 1 (-60.1, 2) is outside the 600×200 pad"},
		{"below the pad", `{"w":600,"h":200,"strokes":[[[1,2],[3,220.5]]]}`, fieldsync.EInvalidRequest, "point 2 of stroke 1 (3, 220.5) is outside"},
		{"trailing data", `{"w":600,"h":200,"strokes":[]} x`, fieldsync.EInvalidJSON, "unexpected data after the object"},
		{"second object", `{"w":600,"h":200,"strokes":[]}{}`, fieldsync.EInvalidJSON, "unexpected data after the object"},
		{"cut short", `{"w":600,"h":200,"strokes":[[[1,2]`, fieldsync.EInvalidJSON, "the JSON ends too early"},
		{"unclosed object", `{"w":600,"h":200,"strokes":[]`, fieldsync.EInvalidJSON, "the JSON ends too early"},
		{"syntax", `{"w":600,"h":200,,"strokes":[]}`, fieldsync.EInvalidJSON, "invalid character"},
		{"too many strokes", strokesJSON(MaxStrokes+1, 1), fieldsync.ETooLarge, "signature has 501 strokes; the limit is 500"},
		{"too many points", strokesJSON(100, 101), fieldsync.ETooLarge, "signature has 10100 points; the limit is 10000"},
		{"too long", `{"w":600,"h":200,"strokes":[]}` + strings.Repeat(" ", MaxStrokesJSONSize), fieldsync.ETooLarge, "the limit is 1 MiB"},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, w, h, err := DecodeStrokes([]byte(c.in))
			wantCode(t, err, c.code, c.msg)
			if s != nil || w != 0 || h != 0 {
				t.Fatal("a refused input returned values")
			}
		})
	}
	// The limits themselves are allowed.
	if _, _, _, err := DecodeStrokes([]byte(strokesJSON(MaxStrokes, 20))); err != nil {
		t.Fatalf("%d strokes of 20 points refused: %v", MaxStrokes, err)
	}
}

func TestDecodeStrokesRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(testSeed(t), 2))
	strokes := handwriting(rng, 600, 200)
	pts := make([][][2]float64, len(strokes))
	for i, s := range strokes {
		for _, p := range s {
			pts[i] = append(pts[i], [2]float64{p.X, p.Y})
		}
	}
	data, err := json.Marshal(map[string]any{"w": 600, "h": 200, "strokes": pts})
	if err != nil {
		t.Fatal(err)
	}
	got, w, h, err := DecodeStrokes(data)
	if err != nil {
		t.Fatal(err)
	}
	if w != 600 || h != 200 || fmt.Sprint(got) != fmt.Sprint(strokes) {
		t.Fatal("strokes changed in a round trip through JSON")
	}
	a, err := EncodeSignature(got, w, h)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := EncodeSignature(strokes, 600, 200)
	if !bytes.Equal(a.Data, b.Data) {
		t.Fatal("the same strokes drew different PNGs")
	}
	t.Logf("strokes JSON %d bytes, PNG %d bytes", len(data), len(a.Data))
}
