// Package media prepares photos, scans and signatures on the device before
// they are stored and sent.
//
// A photo or scan is decoded (JPEG or PNG), turned upright by its EXIF
// orientation, downsized so its longest side fits a limit, and re-encoded as
// a JPEG, which drops every piece of metadata (location, camera, time). A
// small thumbnail is made beside it for lists. A signature becomes a tiny
// two-colour PNG, whether it arrives as pen strokes or as a picture.
//
// Every input is untrusted: sizes are checked against limits before any
// pixel is decoded, and every refusal is a *fieldsync.Error with a stable
// code and a message that can be shown to the person holding the device.
// All functions are safe for concurrent use; none keeps state between calls.
package media

import (
	"bytes"
	"errors"
	"fmt"
	"image"
	"image/jpeg"
	"image/png"
	"io"
	"math"

	"github.com/fieldsync/fieldsync"
)

// Content types of prepared attachments.
const (
	TypeJPEG = "image/jpeg"
	TypePNG  = "image/png"
)

// Defaults used for the zero fields of PhotoOptions.
const (
	DefaultMaxDim        = 2048
	DefaultQuality       = 80
	DefaultThumbDim      = 320
	DefaultThumbQuality  = 70
	DefaultMaxPixels     = 64_000_000
	DefaultMaxInputBytes = 40 << 20
)

// PhotoOptions tunes PreparePhoto and PrepareScan. The zero value of every
// field means its documented default; negative values and qualities above
// 100 are refused (see Validate).
type PhotoOptions struct {
	MaxDim        int   // longest side of the prepared photo in pixels; default 2048
	Quality       int   // JPEG quality 1..100; default 80
	ThumbDim      int   // longest side of the thumbnail; default 320
	ThumbQuality  int   // JPEG quality of the thumbnail 1..100; default 70
	MaxPixels     int64 // inputs with more pixels are refused before decoding; default 64e6
	MaxInputBytes int64 // inputs longer than this are refused; default 40 MiB
}

// Validate reports the first field with a value that cannot be used, as a
// *fieldsync.Error with code EInvalidRequest naming the field.
func (o PhotoOptions) Validate() error {
	bad := func(field string, v int64, want string) error {
		return fieldsync.Errorf(fieldsync.EInvalidRequest, "photo options: %s is %d; it must be %s", field, v, want)
	}
	switch {
	case o.MaxDim < 0:
		return bad("MaxDim", int64(o.MaxDim), "0 (default) or more")
	case o.Quality < 0 || o.Quality > 100:
		return bad("Quality", int64(o.Quality), "0 (default) or 1..100")
	case o.ThumbDim < 0:
		return bad("ThumbDim", int64(o.ThumbDim), "0 (default) or more")
	case o.ThumbQuality < 0 || o.ThumbQuality > 100:
		return bad("ThumbQuality", int64(o.ThumbQuality), "0 (default) or 1..100")
	case o.MaxPixels < 0:
		return bad("MaxPixels", o.MaxPixels, "0 (default) or more")
	case o.MaxInputBytes < 0:
		return bad("MaxInputBytes", o.MaxInputBytes, "0 (default) or more")
	}
	return nil
}

// withDefaults returns o with every zero field set to its default.
func (o PhotoOptions) withDefaults() PhotoOptions {
	if o.MaxDim == 0 {
		o.MaxDim = DefaultMaxDim
	}
	if o.Quality == 0 {
		o.Quality = DefaultQuality
	}
	if o.ThumbDim == 0 {
		o.ThumbDim = DefaultThumbDim
	}
	if o.ThumbQuality == 0 {
		o.ThumbQuality = DefaultThumbQuality
	}
	if o.MaxPixels == 0 {
		o.MaxPixels = DefaultMaxPixels
	}
	if o.MaxInputBytes == 0 {
		o.MaxInputBytes = DefaultMaxInputBytes
	}
	return o
}

// Prepared is an attachment ready to be stored and sent.
type Prepared struct {
	Data          []byte // the bytes to store and send
	Thumb         []byte // a small JPEG (photo, scan) or PNG (signature) kept apart on the device for lists; equal to Data for signatures
	ContentType   string // TypeJPEG or TypePNG: the type of Data (and of Thumb)
	Width, Height int    // of Data, in pixels, upright
}

// PreparePhoto reads a JPEG or PNG photo from r and prepares it: turned
// upright by the JPEG's EXIF orientation, downsized so its longest side is
// at most opt.MaxDim (never enlarged), flattened onto white where it is
// transparent, and re-encoded as a JPEG at opt.Quality with no metadata. The
// thumbnail is a JPEG whose longest side is at most opt.ThumbDim.
//
// Errors are *fieldsync.Error: EInvalidRequest for bad options,
// EUnsupportedMedia for input that is not a JPEG or PNG or cannot be decoded,
// ETooLarge for input over opt.MaxInputBytes or opt.MaxPixels (found from the
// header alone, before any pixel is decoded). A read error from r is
// returned wrapped, as it is.
func PreparePhoto(r io.Reader, opt PhotoOptions) (Prepared, error) {
	return prepare(r, opt, "photo")
}

// PrepareScan is PreparePhoto for document scans: same options, limits and
// errors, but a scan whose pixels are all grey (a greyscale JPEG or PNG, or
// a colour file holding only greys) is encoded as a one-channel greyscale
// JPEG, which is smaller.
func PrepareScan(r io.Reader, opt PhotoOptions) (Prepared, error) {
	return prepare(r, opt, "scan")
}

// prepare is the shared pipeline of PreparePhoto and PrepareScan; what is
// "photo" or "scan" and names the input in messages.
func prepare(r io.Reader, opt PhotoOptions, what string) (Prepared, error) {
	if err := opt.Validate(); err != nil {
		return Prepared{}, err
	}
	opt = opt.withDefaults()
	img, orientation, err := decodeLimited(r, what, opt.MaxInputBytes, opt.MaxPixels)
	if err != nil {
		return Prepared{}, err
	}
	sb := img.Bounds()
	dw, dh := fit(sb.Dx(), sb.Dy(), opt.MaxDim)
	// img is not used past this point, so the collector may take the
	// full-size pixels while the rest runs.
	var out image.Image = orient(resize(img, dw, dh), orientation)
	if what == "scan" {
		if g, ok := asGray(out.(*image.RGBA)); ok {
			out = g
		}
	}
	ob := out.Bounds()
	data, err := encodeJPEG(out, opt.Quality)
	if err != nil {
		return Prepared{}, err
	}
	tw, th := fit(ob.Dx(), ob.Dy(), opt.ThumbDim)
	var small image.Image = resize(out, tw, th)
	if _, grey := out.(*image.Gray); grey {
		if g, ok := asGray(small.(*image.RGBA)); ok {
			small = g
		}
	}
	thumb, err := encodeJPEG(small, opt.ThumbQuality)
	if err != nil {
		return Prepared{}, err
	}
	return Prepared{Data: data, Thumb: thumb, ContentType: TypeJPEG, Width: ob.Dx(), Height: ob.Dy()}, nil
}

// decodeLimited reads all of r (at most maxBytes), checks the image header
// against maxPixels, and only then decodes the pixels. It also returns the
// EXIF orientation (1..8) of a JPEG, 1 for a PNG.
func decodeLimited(r io.Reader, what string, maxBytes, maxPixels int64) (image.Image, int, error) {
	data, err := readLimited(r, what, maxBytes)
	if err != nil {
		return nil, 0, err
	}
	kind := Sniff(data)
	if kind == "" {
		return nil, 0, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s is not a JPEG or PNG image", what)
	}
	decodeConfig, decode := jpeg.DecodeConfig, jpeg.Decode
	name := "JPEG"
	if kind == TypePNG {
		decodeConfig, decode = png.DecodeConfig, png.Decode
		name = "PNG"
	}
	cfg, err := decodeConfig(bytes.NewReader(data))
	if err != nil {
		return nil, 0, damaged(what, name, err)
	}
	if cfg.Width <= 0 || cfg.Height <= 0 {
		return nil, 0, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s has no pixels (%d×%d)", what, cfg.Width, cfg.Height)
	}
	if px := int64(cfg.Width) * int64(cfg.Height); px > maxPixels {
		return nil, 0, fieldsync.Errorf(fieldsync.ETooLarge, "%s is %s megapixels (%d×%d); the limit is %s",
			what, megapixels(px), cfg.Width, cfg.Height, megapixels(maxPixels))
	}
	orientation := 1
	if kind == TypeJPEG {
		orientation = jpegOrientation(data)
	}
	img, err := decode(bytes.NewReader(data))
	if err != nil {
		return nil, 0, damaged(what, name, err)
	}
	return img, orientation, nil
}

// readLimited reads all of r, refusing more than max bytes.
func readLimited(r io.Reader, what string, max int64) ([]byte, error) {
	n := max
	if n < math.MaxInt64 {
		n++ // one byte more than allowed tells a long input from one at the limit
	}
	data, err := io.ReadAll(io.LimitReader(r, n))
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", what, err)
	}
	if int64(len(data)) > max {
		return nil, fieldsync.Errorf(fieldsync.ETooLarge, "%s is larger than the limit of %s", what, byteSize(max))
	}
	if len(data) == 0 {
		return nil, fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s is empty", what)
	}
	return data, nil
}

// damaged turns a decoder's error into a user-safe refusal.
func damaged(what, format string, err error) error {
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s is a cut-short %s: the file ends too early", what, format)
	}
	switch err.(type) {
	case jpeg.UnsupportedError, png.UnsupportedError:
		return fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s is a %s this device cannot read (%v)", what, format, err)
	}
	return fieldsync.Errorf(fieldsync.EUnsupportedMedia, "%s is a damaged %s (%v)", what, format, err)
}

// encodeJPEG encodes m as a baseline JPEG with no metadata.
func encodeJPEG(m image.Image, quality int) ([]byte, error) {
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: quality}); err != nil {
		return nil, fmt.Errorf("encode jpeg: %w", err)
	}
	return buf.Bytes(), nil
}

// fit returns the size of a w×h image scaled so its longest side is at
// most max, keeping the aspect ratio and never enlarging it.
func fit(w, h, max int) (int, int) {
	long := w
	if h > long {
		long = h
	}
	if long <= max {
		return w, h
	}
	scale := float64(max) / float64(long)
	sw, sh := int(float64(w)*scale+0.5), int(float64(h)*scale+0.5)
	if w >= h {
		sw = max
	} else {
		sh = max
	}
	return clampMin1(sw), clampMin1(sh)
}

func clampMin1(v int) int {
	if v < 1 {
		return 1
	}
	return v
}

// megapixels formats a pixel count in megapixels, with one decimal below 10.
func megapixels(px int64) string {
	mp := float64(px) / 1e6
	if mp >= 10 {
		return fmt.Sprintf("%.0f", mp)
	}
	s := fmt.Sprintf("%.1f", mp)
	if len(s) > 2 && s[len(s)-2:] == ".0" {
		s = s[:len(s)-2]
	}
	return s
}

// byteSize formats a byte count for a person: "40 MiB", "512 KiB", "900 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}
