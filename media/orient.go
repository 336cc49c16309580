package media

import (
	"encoding/binary"
	"image"
)

// EXIF orientation values (TIFF tag 0x0112): how the stored pixels must be
// turned to be seen upright.
const (
	orientNormal     = 1 // as stored
	orientFlipH      = 2 // mirrored left to right
	orientRotate180  = 3
	orientFlipV      = 4 // mirrored top to bottom
	orientTranspose  = 5 // mirrored along the top-left to bottom-right diagonal
	orientRotate90   = 6 // turn 90° clockwise to see it upright
	orientTransverse = 7 // mirrored along the top-right to bottom-left diagonal
	orientRotate270  = 8 // turn 90° anticlockwise to see it upright
)

// jpegOrientation returns the EXIF orientation (1..8) of the JPEG in b, or
// 1 when it has none or it cannot be read. It walks the marker segments
// before the image data and reads only the Orientation tag of IFD0 in the
// first Exif APP1 segment; every offset is bounds-checked.
func jpegOrientation(b []byte) int {
	if len(b) < 4 || b[0] != 0xFF || b[1] != 0xD8 {
		return orientNormal
	}
	for i := 2; i+4 <= len(b); {
		if b[i] != 0xFF {
			return orientNormal
		}
		m := b[i+1]
		switch {
		case m == 0xFF: // fill byte
			i++
			continue
		case m == 0x01 || m >= 0xD0 && m <= 0xD8: // markers with no length
			i += 2
			continue
		case m == 0xDA || m == 0xD9: // image data or the end: no more metadata
			return orientNormal
		}
		n := int(binary.BigEndian.Uint16(b[i+2:]))
		if n < 2 || i+2+n > len(b) {
			return orientNormal
		}
		seg := b[i+4 : i+2+n]
		if m == 0xE1 && len(seg) >= 6 && string(seg[:6]) == "Exif\x00\x00" {
			return tiffOrientation(seg[6:])
		}
		i += 2 + n
	}
	return orientNormal
}

// tiffOrientation reads the Orientation tag of IFD0 of the TIFF structure
// in t (the body of an Exif segment), or returns 1.
func tiffOrientation(t []byte) int {
	if len(t) < 8 {
		return orientNormal
	}
	var order binary.ByteOrder
	switch string(t[:2]) {
	case "II":
		order = binary.LittleEndian
	case "MM":
		order = binary.BigEndian
	default:
		return orientNormal
	}
	if order.Uint16(t[2:]) != 42 {
		return orientNormal
	}
	ifd := uint64(order.Uint32(t[4:]))
	if ifd < 8 || ifd+2 > uint64(len(t)) {
		return orientNormal
	}
	count := uint64(order.Uint16(t[ifd:]))
	for k := uint64(0); k < count; k++ {
		e := ifd + 2 + 12*k
		if e+12 > uint64(len(t)) {
			return orientNormal
		}
		if order.Uint16(t[e:]) != 0x0112 {
			continue
		}
		var v uint32
		switch typ, n := order.Uint16(t[e+2:]), order.Uint32(t[e+4:]); {
		case typ == 3 && n >= 1: // SHORT
			v = uint32(order.Uint16(t[e+8:]))
		case typ == 4 && n >= 1: // LONG, written by a few tools
			v = order.Uint32(t[e+8:])
		default:
			return orientNormal
		}
		if v >= 1 && v <= 8 {
			return int(v)
		}
		return orientNormal
	}
	return orientNormal
}

// orient returns m turned upright for EXIF orientation o. It returns m
// itself for orientation 1 (or an unknown value).
func orient(m *image.RGBA, o int) *image.RGBA {
	if o < 2 || o > 8 {
		return m
	}
	w, h := m.Rect.Dx(), m.Rect.Dy()
	ow, oh := w, h
	if o >= orientTranspose {
		ow, oh = h, w
	}
	out := image.NewRGBA(image.Rect(0, 0, ow, oh))
	for dy := 0; dy < oh; dy++ {
		row := out.Pix[dy*out.Stride : dy*out.Stride+ow*4]
		for dx := 0; dx < ow; dx++ {
			sx, sy := sourceOf(o, dx, dy, w, h)
			s := m.PixOffset(m.Rect.Min.X+sx, m.Rect.Min.Y+sy)
			copy(row[dx*4:dx*4+4], m.Pix[s:s+4])
		}
	}
	return out
}

// sourceOf maps an upright pixel (dx, dy) to the stored pixel of a w×h
// image with EXIF orientation o.
func sourceOf(o, dx, dy, w, h int) (sx, sy int) {
	switch o {
	case orientFlipH:
		return w - 1 - dx, dy
	case orientRotate180:
		return w - 1 - dx, h - 1 - dy
	case orientFlipV:
		return dx, h - 1 - dy
	case orientTranspose:
		return dy, dx
	case orientRotate90:
		return dy, h - 1 - dx
	case orientTransverse:
		return w - 1 - dy, h - 1 - dx
	case orientRotate270:
		return w - 1 - dy, dx
	}
	return dx, dy
}
