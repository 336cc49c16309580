package media

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"

	"github.com/fieldsync/fieldsync"
)

// Colours of the four quadrants of the upright test picture.
var (
	red   = color.RGBA{255, 0, 0, 255}
	green = color.RGBA{0, 255, 0, 255}
	blue  = color.RGBA{0, 0, 255, 255}
	white = color.RGBA{255, 255, 255, 255}
)

// quadrants returns a w×h image whose top-left, top-right, bottom-left and
// bottom-right quarters have the given colours.
func quadrants(w, h int, tl, tr, bl, br color.RGBA) *image.RGBA {
	m := image.NewRGBA(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			c := tl
			switch {
			case x >= w/2 && y < h/2:
				c = tr
			case x < w/2 && y >= h/2:
				c = bl
			case x >= w/2 && y >= h/2:
				c = br
			}
			m.SetRGBA(x, y, c)
		}
	}
	return m
}

func encJPEG(t testing.TB, m image.Image, q int) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: q}); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func encPNG(t testing.TB, m image.Image) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := png.Encode(&buf, m); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// exifSegment returns an APP1 Exif segment whose IFD0 holds a Make tag and
// the Orientation tag o, in little-endian ("II") or big-endian ("MM") order.
func exifSegment(o int, bigEndian bool, make string) []byte {
	var order interface {
		binary.ByteOrder
		binary.AppendByteOrder
	} = binary.LittleEndian
	tiff := []byte("II")
	if bigEndian {
		order, tiff = binary.BigEndian, []byte("MM")
	}
	tiff = order.AppendUint16(tiff, 42)
	tiff = order.AppendUint32(tiff, 8)
	tiff = order.AppendUint16(tiff, 2) // two entries
	makeOff := uint32(8 + 2 + 2*12 + 4)
	tiff = order.AppendUint16(tiff, 0x010F) // Make, ASCII, stored after the IFD
	tiff = order.AppendUint16(tiff, 2)
	tiff = order.AppendUint32(tiff, uint32(len(make)+1))
	tiff = order.AppendUint32(tiff, makeOff)
	tiff = order.AppendUint16(tiff, 0x0112) // Orientation, SHORT, inline
	tiff = order.AppendUint16(tiff, 3)
	tiff = order.AppendUint32(tiff, 1)
	tiff = order.AppendUint16(tiff, uint16(o))
	tiff = order.AppendUint16(tiff, 0)
	tiff = order.AppendUint32(tiff, 0) // no next IFD
	tiff = append(tiff, make...)
	tiff = append(tiff, 0)
	return segment(0xE1, append([]byte("Exif\x00\x00"), tiff...))
}

// segment returns a JPEG marker segment.
func segment(marker byte, body []byte) []byte {
	s := []byte{0xFF, marker}
	s = binary.BigEndian.AppendUint16(s, uint16(len(body)+2))
	return append(s, body...)
}

// afterSOI inserts segments right after a JPEG's start-of-image marker.
func afterSOI(j []byte, segs ...[]byte) []byte {
	out := append([]byte{}, j[:2]...)
	for _, s := range segs {
		out = append(out, s...)
	}
	return append(out, j[2:]...)
}

func decodeJPEG(t testing.TB, b []byte) image.Image {
	t.Helper()
	if Sniff(b) != TypeJPEG {
		t.Fatalf("output is not a JPEG: % x", b[:min(len(b), 8)])
	}
	m, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("output does not decode: %v", err)
	}
	return m
}

// near reports whether c is within tol of want on every channel.
func near(c color.Color, want color.RGBA, tol int) bool {
	r, g, b, _ := c.RGBA()
	d := func(a uint32, w uint8) bool { return abs(int(a>>8)-int(w)) <= tol }
	return d(r, want.R) && d(g, want.G) && d(b, want.B)
}

// wantCode fails unless err is a *fieldsync.Error with the code and a
// message containing msg.
func wantCode(t *testing.T, err error, code fieldsync.Code, msg string) {
	t.Helper()
	var fe *fieldsync.Error
	if !errors.As(err, &fe) {
		t.Fatalf("error %v (%T) is not a *fieldsync.Error", err, err)
	}
	if fe.Code != code || !strings.Contains(fe.Message, msg) {
		t.Fatalf("got %s: %q; want %s with %q", fe.Code, fe.Message, code, msg)
	}
}

func TestPreparePhotoOrientation(t *testing.T) {
	// How each orientation stores the upright picture (red, green / blue,
	// white), from the EXIF definitions: for 6, "the 0th row is the visual
	// right-hand side and the 0th column the visual top", and so on.
	stored := map[int][4]color.RGBA{ // top-left, top-right, bottom-left, bottom-right as stored
		1: {red, green, blue, white},
		2: {green, red, white, blue},
		3: {white, blue, green, red},
		4: {blue, white, red, green},
		5: {red, blue, green, white},
		6: {green, white, red, blue},
		7: {white, green, blue, red},
		8: {blue, red, white, green},
	}
	for o := 1; o <= 8; o++ {
		for _, big := range []bool{false, true} {
			t.Run(fmt.Sprintf("orientation%d/bigEndian=%v", o, big), func(t *testing.T) {
				q := stored[o]
				sw, sh := 96, 64 // stored size; 5..8 are upright 64×96
				src := encJPEG(t, quadrants(sw, sh, q[0], q[1], q[2], q[3]), 95)
				src = afterSOI(src, exifSegment(o, big, "TestCam"))
				if got := jpegOrientation(src); got != o {
					t.Fatalf("jpegOrientation = %d, want %d", got, o)
				}
				p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{})
				if err != nil {
					t.Fatal(err)
				}
				ww, wh := sw, sh
				if o >= 5 {
					ww, wh = sh, sw
				}
				m := decodeJPEG(t, p.Data)
				if b := m.Bounds(); b.Dx() != ww || b.Dy() != wh || p.Width != ww || p.Height != wh {
					t.Fatalf("output %v, reported %d×%d; want %d×%d", b, p.Width, p.Height, ww, wh)
				}
				for _, c := range []struct {
					x, y int
					want color.RGBA
				}{{ww / 4, wh / 4, red}, {3 * ww / 4, wh / 4, green}, {ww / 4, 3 * wh / 4, blue}, {3 * ww / 4, 3 * wh / 4, white}} {
					if got := m.At(c.x, c.y); !near(got, c.want, 40) {
						t.Errorf("pixel (%d,%d) = %v, want %v", c.x, c.y, got, c.want)
					}
				}
			})
		}
	}
}

func TestJPEGOrientationParsing(t *testing.T) {
	base := encJPEG(t, image.NewGray(image.Rect(0, 0, 8, 8)), 90)
	longExif := func(o uint32) []byte { // Orientation written as a LONG
		tiff := []byte("MM\x00\x2a\x00\x00\x00\x08\x00\x01")
		tiff = binary.BigEndian.AppendUint16(tiff, 0x0112)
		tiff = binary.BigEndian.AppendUint16(tiff, 4)
		tiff = binary.BigEndian.AppendUint32(tiff, 1)
		tiff = binary.BigEndian.AppendUint32(tiff, o)
		tiff = binary.BigEndian.AppendUint32(tiff, 0)
		return segment(0xE1, append([]byte("Exif\x00\x00"), tiff...))
	}
	xmp := segment(0xE1, []byte("http://ns.adobe.com/xap/1.0/\x00<x:xmpmeta/>"))
	truncated := exifSegment(6, false, "Cam")
	truncated = truncated[:len(truncated)-30]
	binary.BigEndian.PutUint16(truncated[2:], uint16(len(truncated)-2))
	for _, c := range []struct {
		name string
		data []byte
		want int
	}{
		{"no exif", base, 1},
		{"after JFIF and XMP", afterSOI(base, segment(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00")), xmp, exifSegment(8, true, "X")), 8},
		{"long value", afterSOI(base, longExif(3)), 3},
		{"zero", afterSOI(base, exifSegment(0, false, "X")), 1},
		{"nine", afterSOI(base, exifSegment(9, false, "X")), 1},
		{"IFD cut short", afterSOI(base, truncated), 1},
		{"segment longer than file", afterSOI(base, exifSegment(6, false, "X"))[:30], 1},
		{"bad byte order", afterSOI(base, segment(0xE1, []byte("Exif\x00\x00XX\x00\x2a\x00\x00\x00\x08"))), 1},
		{"IFD offset past end", afterSOI(base, segment(0xE1, []byte("Exif\x00\x00II\x2a\x00\xff\xff\xff\xff"))), 1},
		{"not a JPEG", []byte("hello"), 1},
		{"empty", nil, 1},
	} {
		if got := jpegOrientation(c.data); got != c.want {
			t.Errorf("%s: orientation %d, want %d", c.name, got, c.want)
		}
	}
}

func TestPreparePhotoNeverUpsizes(t *testing.T) {
	src := encJPEG(t, quadrants(300, 200, red, green, blue, white), 90)
	p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Width != 300 || p.Height != 200 {
		t.Fatalf("prepared %d×%d, want 300×200", p.Width, p.Height)
	}
	if b := decodeJPEG(t, p.Thumb).Bounds(); b.Dx() != 300 || b.Dy() != 200 {
		t.Fatalf("thumbnail %v, want 300×200 (smaller than ThumbDim, so kept)", b)
	}
}

func TestPreparePhotoSizes(t *testing.T) {
	for _, c := range []struct {
		w, h, maxDim, thumbDim int
		ww, wh, tw, th         int
	}{
		{800, 600, 400, 100, 400, 300, 100, 75},
		{600, 800, 400, 100, 300, 400, 75, 100},
		{801, 601, 400, 100, 400, 300, 100, 75},
		{1000, 20, 250, 50, 250, 5, 50, 1},
		{20, 1000, 250, 50, 5, 250, 1, 50},
		{401, 401, 400, 320, 400, 400, 320, 320},
		{400, 300, 400, 320, 400, 300, 320, 240},
		{1, 1, 400, 320, 1, 1, 1, 1},
	} {
		t.Run(fmt.Sprintf("%dx%d", c.w, c.h), func(t *testing.T) {
			src := synthetic(c.w, c.h, 90)
			p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{MaxDim: c.maxDim, ThumbDim: c.thumbDim})
			if err != nil {
				t.Fatal(err)
			}
			if b := decodeJPEG(t, p.Data).Bounds(); b.Dx() != c.ww || b.Dy() != c.wh || p.Width != c.ww || p.Height != c.wh {
				t.Errorf("prepared %v (reported %d×%d), want %d×%d", b, p.Width, p.Height, c.ww, c.wh)
			}
			if b := decodeJPEG(t, p.Thumb).Bounds(); b.Dx() != c.tw || b.Dy() != c.th {
				t.Errorf("thumbnail %v, want %d×%d", b, c.tw, c.th)
			}
			if p.ContentType != TypeJPEG {
				t.Errorf("content type %q", p.ContentType)
			}
		})
	}
}

func TestFitKeepsAspect(t *testing.T) {
	for w := 1; w <= 5000; w += 97 {
		for h := 1; h <= 5000; h += 89 {
			dw, dh := fit(w, h, 2048)
			if max(dw, dh) > 2048 || dw > w || dh > h || dw < 1 || dh < 1 {
				t.Fatalf("fit(%d,%d) = %d×%d", w, h, dw, dh)
			}
			if max(w, h) > 2048 && max(dw, dh) != 2048 {
				t.Fatalf("fit(%d,%d) = %d×%d: the longest side should be 2048", w, h, dw, dh)
			}
			// The aspect ratio is kept to within the rounding of one pixel.
			if d := float64(dw)*float64(h) - float64(dh)*float64(w); d > float64(max(w, h)) || -d > float64(max(w, h)) {
				t.Fatalf("fit(%d,%d) = %d×%d changes the aspect ratio", w, h, dw, dh)
			}
		}
	}
}

func TestPreparePhotoQualityReducesSize(t *testing.T) {
	src := synthetic(640, 480, 95)
	size := func(q int) int {
		p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{Quality: q, ThumbQuality: q})
		if err != nil {
			t.Fatal(err)
		}
		return len(p.Data)
	}
	hi, def, lo := size(95), size(0), size(30)
	t.Logf("640×480: quality 95 → %d bytes, default (80) → %d, 30 → %d", hi, def, lo)
	if !(lo < def && def < hi) {
		t.Fatalf("sizes do not fall with quality: 95 → %d, 80 → %d, 30 → %d", hi, def, lo)
	}
}

func TestPreparePhotoStripsMetadata(t *testing.T) {
	src := encJPEG(t, quadrants(64, 64, red, green, blue, white), 90)
	src = afterSOI(src, exifSegment(1, false, "SECRET-CAMERA"), segment(0xFE, []byte("SECRET-COMMENT")))
	p, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range [][]byte{p.Data, p.Thumb} {
		if bytes.Contains(b, []byte("SECRET")) || bytes.Contains(b, []byte("Exif")) {
			t.Fatal("metadata survived preparation")
		}
	}
}

func TestPreparePhotoFlattensTransparency(t *testing.T) {
	m := image.NewNRGBA(image.Rect(0, 0, 40, 40)) // all transparent black
	for y := 0; y < 20; y++ {
		for x := 0; x < 40; x++ {
			m.SetNRGBA(x, y, color.NRGBA{0, 0, 255, 255})
		}
	}
	p, err := PreparePhoto(bytes.NewReader(encPNG(t, m)), PhotoOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := decodeJPEG(t, p.Data)
	if got := out.At(20, 5); !near(got, blue, 30) {
		t.Errorf("opaque part = %v, want blue", got)
	}
	if got := out.At(20, 35); !near(got, white, 10) {
		t.Errorf("transparent part = %v, want white", got)
	}
}

func TestPrepareScanGrey(t *testing.T) {
	grey := image.NewGray(image.Rect(0, 0, 300, 400))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(i * 7)
	}
	greyRGB := image.NewRGBA(grey.Rect) // a colour file holding only greys
	for i, v := range grey.Pix {
		copy(greyRGB.Pix[i*4:], []byte{v, v, v, 255})
	}
	colour := quadrants(300, 400, red, green, blue, white)
	for _, c := range []struct {
		name      string
		src       []byte
		scan      bool
		wantGrey  bool
		dimension int
	}{
		{"grey JPEG scan", encJPEG(t, grey, 90), true, true, 0},
		{"grey PNG scan", encPNG(t, grey), true, true, 0},
		{"grey RGB PNG scan", encPNG(t, greyRGB), true, true, 200},
		{"colour scan", encPNG(t, colour), true, false, 0},
		{"grey photo stays colour JPEG", encPNG(t, grey), false, false, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			prep := PreparePhoto
			if c.scan {
				prep = PrepareScan
			}
			p, err := prep(bytes.NewReader(c.src), PhotoOptions{MaxDim: c.dimension})
			if err != nil {
				t.Fatal(err)
			}
			for _, b := range [][]byte{p.Data, p.Thumb} {
				_, isGrey := decodeJPEG(t, b).(*image.Gray)
				if isGrey != c.wantGrey {
					t.Errorf("greyscale JPEG = %v, want %v", isGrey, c.wantGrey)
				}
			}
		})
	}
}

// pngHeader returns the start of a PNG that claims w×h RGBA pixels: the
// signature and a valid IHDR chunk, and nothing else.
func pngHeader(w, h uint32) []byte {
	b := []byte("\x89PNG\r\n\x1a\n")
	ihdr := []byte("IHDR")
	ihdr = binary.BigEndian.AppendUint32(ihdr, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0) // 8-bit RGBA, no interlace
	b = binary.BigEndian.AppendUint32(b, 13)
	b = append(b, ihdr...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
}

// jpegHeader returns the start of a baseline greyscale JPEG that claims
// w×h pixels: SOI, a JFIF APP0 segment and a SOF0 segment.
func jpegHeader(w, h uint16) []byte {
	sof := []byte{8}
	sof = binary.BigEndian.AppendUint16(sof, h)
	sof = binary.BigEndian.AppendUint16(sof, w)
	sof = append(sof, 1, 1, 0x11, 0)
	jfif := segment(0xE0, []byte("JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"))
	return append(append([]byte{0xFF, 0xD8}, jfif...), segment(0xC0, sof)...)
}

func TestPreparePhotoRefusesHugeHeadersWithoutDecoding(t *testing.T) {
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"PNG 100000×100000", pngHeader(100000, 100000), "photo is 10000 megapixels (100000×100000); the limit is 64"},
		{"JPEG 65000×65000", jpegHeader(65000, 65000), "photo is 4225 megapixels (65000×65000); the limit is 64"},
		{"PNG just over", pngHeader(8001, 8000), "photo is 64 megapixels (8001×8000); the limit is 64"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			_, err := PreparePhoto(bytes.NewReader(c.data), PhotoOptions{})
			runtime.ReadMemStats(&after)
			wantCode(t, err, fieldsync.ETooLarge, c.msg)
			if n := after.TotalAlloc - before.TotalAlloc; n > 1<<20 {
				t.Fatalf("refusing the header allocated %d bytes", n)
			}
		})
	}
	_, err := PreparePhoto(bytes.NewReader(pngHeader(1000, 1000)), PhotoOptions{MaxPixels: 999_999})
	wantCode(t, err, fieldsync.ETooLarge, "photo is 1 megapixels (1000×1000); the limit is 1")
	_, err = PrepareScan(bytes.NewReader(pngHeader(2000, 1000)), PhotoOptions{MaxPixels: 1_500_000})
	wantCode(t, err, fieldsync.ETooLarge, "scan is 2 megapixels (2000×1000); the limit is 1.5")
}

// endless is a reader that never ends.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 0xFF
	}
	e.n += int64(len(p))
	return len(p), nil
}

func TestPreparePhotoRefusesLongInput(t *testing.T) {
	r := &endless{}
	_, err := PreparePhoto(r, PhotoOptions{MaxInputBytes: 1000})
	wantCode(t, err, fieldsync.ETooLarge, "photo is larger than the limit of 1000 bytes")
	if r.n > 64<<10 {
		t.Fatalf("read %d bytes of an input limited to 1000", r.n)
	}
	src := synthetic(64, 64, 90)
	if _, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{MaxInputBytes: int64(len(src))}); err != nil {
		t.Fatalf("input of exactly the limit refused: %v", err)
	}
	if _, err := PreparePhoto(bytes.NewReader(src), PhotoOptions{MaxInputBytes: math.MaxInt64}); err != nil {
		t.Fatalf("the largest limit refused a small photo: %v", err)
	}
	_, err = PreparePhoto(bytes.NewReader(src), PhotoOptions{MaxInputBytes: int64(len(src) - 1)})
	wantCode(t, err, fieldsync.ETooLarge, "photo is larger than the limit of")
	_, err = PreparePhoto(&endless{}, PhotoOptions{})
	wantCode(t, err, fieldsync.ETooLarge, "photo is larger than the limit of 40 MiB")
}

func TestPreparePhotoRefusesGarbage(t *testing.T) {
	good := synthetic(64, 48, 90)
	goodPNG := encPNG(t, quadrants(16, 16, red, green, blue, white))
	corrupt := append([]byte{}, good...)
	for i := len(corrupt) / 2; i < len(corrupt)-2; i++ {
		corrupt[i] = 0xFF // markers where the entropy-coded data should be
	}
	badCRC := append([]byte{}, goodPNG...)
	badCRC[len(badCRC)-20] ^= 0xFF
	for _, c := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"text", []byte("hello, this is not a photo"), "photo is not a JPEG or PNG image"},
		{"GIF", []byte("GIF89a\x01\x00\x01\x00\x00\x00\x00;"), "photo is not a JPEG or PNG image"},
		{"empty", nil, "photo is empty"},
		{"JPEG signature only", []byte{0xFF, 0xD8, 0xFF}, "photo is a cut-short JPEG"},
		{"JPEG cut in the headers", good[:100], "photo is a cut-short JPEG"},
		{"JPEG cut in the pixels", good[:len(good)/2], "photo is a damaged JPEG (invalid JPEG format: short Huffman data)"},
		{"JPEG damaged", corrupt, "photo is a damaged JPEG"},
		{"PNG header only", pngHeader(10, 10), "photo is a cut-short PNG"},
		{"PNG bad checksum", badCRC, "photo is a damaged PNG"},
		{"PNG zero width", pngHeader(0, 10), "photo is a damaged PNG"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p, err := PreparePhoto(bytes.NewReader(c.data), PhotoOptions{})
			wantCode(t, err, fieldsync.EUnsupportedMedia, c.msg)
			if p.Data != nil || p.Thumb != nil {
				t.Fatal("a refused photo returned bytes")
			}
		})
	}
}

func TestPreparePhotoReadError(t *testing.T) {
	boom := errors.New("card removed")
	_, err := PreparePhoto(io.MultiReader(bytes.NewReader([]byte{0xFF, 0xD8}), &failing{boom}), PhotoOptions{})
	if !errors.Is(err, boom) {
		t.Fatalf("error %v does not wrap the read error", err)
	}
	if fieldsync.ErrorCode(err) != fieldsync.EInternal {
		t.Fatalf("a read error got code %s", fieldsync.ErrorCode(err))
	}
}

type failing struct{ err error }

func (f *failing) Read([]byte) (int, error) { return 0, f.err }

func TestPhotoOptionsValidate(t *testing.T) {
	src := synthetic(32, 32, 90)
	for _, c := range []struct {
		opt   PhotoOptions
		field string
	}{
		{PhotoOptions{MaxDim: -1}, "MaxDim is -1"},
		{PhotoOptions{Quality: 101}, "Quality is 101"},
		{PhotoOptions{Quality: -5}, "Quality is -5"},
		{PhotoOptions{ThumbDim: -2}, "ThumbDim is -2"},
		{PhotoOptions{ThumbQuality: 1000}, "ThumbQuality is 1000"},
		{PhotoOptions{MaxPixels: -1}, "MaxPixels is -1"},
		{PhotoOptions{MaxInputBytes: -1}, "MaxInputBytes is -1"},
	} {
		wantCode(t, c.opt.Validate(), fieldsync.EInvalidRequest, c.field)
		_, err := PreparePhoto(bytes.NewReader(src), c.opt)
		wantCode(t, err, fieldsync.EInvalidRequest, c.field)
	}
	if err := (PhotoOptions{Quality: 100, ThumbQuality: 1, MaxDim: 1}).Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestSniff(t *testing.T) {
	for _, c := range []struct {
		head string
		want string
	}{
		{"\xff\xd8\xff\xe0", TypeJPEG},
		{"\xff\xd8\xff", TypeJPEG},
		{"\xff\xd8", ""},
		{"\x89PNG\r\n\x1a\n\x00", TypePNG},
		{"\x89PNG\r\n\x1a", ""},
		{"GIF89a", ""},
		{"", ""},
	} {
		if got := Sniff([]byte(c.head)); got != c.want {
			t.Errorf("Sniff(%q) = %q, want %q", c.head, got, c.want)
		}
	}
}

func TestSyntheticIsDeterministicAndPhotoLike(t *testing.T) {
	t.Parallel()
	a, b := synthetic(400, 300, 92), synthetic(400, 300, 92)
	if !bytes.Equal(a, b) {
		t.Fatal("synthetic picture differs between calls")
	}
	m := decodeJPEG(t, a)
	// Not a flat colour: neighbouring pixels differ and brightness spans a range.
	lo, hi, changes := 255, 0, 0
	prev := -1
	for x := 0; x < 400; x++ {
		v := int(m.(*image.YCbCr).Y[150*m.(*image.YCbCr).YStride+x])
		lo, hi = min(lo, v), max(hi, v)
		if prev >= 0 && v != prev {
			changes++
		}
		prev = v
	}
	if hi-lo < 30 || changes < 200 {
		t.Fatalf("synthetic picture looks flat: range %d..%d, %d changes in a row of 400", lo, hi, changes)
	}
	if testing.Short() {
		return
	}
	cfg, err := jpeg.DecodeConfig(bytes.NewReader(Synthetic12MP()))
	if err != nil || cfg.Width != 4000 || cfg.Height != 3000 {
		t.Fatalf("Synthetic12MP: %+v, %v", cfg, err)
	}
}
