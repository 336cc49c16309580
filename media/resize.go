package media

import (
	"image"
	"image/color"

	"golang.org/x/image/draw"
)

// resize returns src scaled to dw×dh as an opaque RGBA image, flattened
// onto white where src is transparent.
//
// A large reduction is done by halving first: each halving step is an exact
// 2×2 average (draw.ApproxBiLinear sampling between four pixels), so every
// source pixel counts, and the last step, a reduction of less than two, is
// bilinear. This keeps the quality of a proper low-pass filter at a
// fraction of the time of draw.CatmullRom, and, unlike the Kernel scalers,
// needs no scratch buffer of width × source height × 32 bytes (196 MB for a
// 12-megapixel photo): the largest extra image alive is the first halving,
// a quarter of the source.
func resize(src image.Image, dw, dh int) *image.RGBA {
	for {
		b := src.Bounds()
		hw, hh := b.Dx(), b.Dy()
		if hw >= 2*dw {
			hw /= 2
		}
		if hh >= 2*dh {
			hh /= 2
		}
		if hw == b.Dx() && hh == b.Dy() {
			break
		}
		src = scaleTo(src, hw, hh)
	}
	return scaleTo(src, dw, dh)
}

// scaleTo scales src to w×h with draw.ApproxBiLinear onto an opaque RGBA
// image. An opaque RGBA source of that size is returned as it is.
func scaleTo(src image.Image, w, h int) *image.RGBA {
	b := src.Bounds()
	isOpaque := opaque(src)
	if m, ok := src.(*image.RGBA); ok && isOpaque && b.Dx() == w && b.Dy() == h {
		return m
	}
	dst := image.NewRGBA(image.Rect(0, 0, w, h))
	op := draw.Src
	if !isOpaque {
		draw.Draw(dst, dst.Rect, image.NewUniform(color.White), image.Point{}, draw.Src)
		op = draw.Over
	}
	draw.ApproxBiLinear.Scale(dst, dst.Rect, src, b, op, nil)
	return dst
}

// opaque reports whether every pixel of m is fully opaque, when m can tell;
// an image that cannot tell is treated as possibly transparent.
func opaque(m image.Image) bool {
	o, ok := m.(interface{ Opaque() bool })
	return ok && o.Opaque()
}

// greyTolerance is how far apart R, G and B may be for a pixel to count as
// grey: JPEG's colour conversion leaves a unit or two of difference.
const greyTolerance = 3

// asGray returns m as a greyscale image when all its pixels are grey.
func asGray(m *image.RGBA) (*image.Gray, bool) {
	w, h := m.Rect.Dx(), m.Rect.Dy()
	for y := 0; y < h; y++ {
		row := m.Pix[y*m.Stride : y*m.Stride+w*4]
		for i := 0; i < len(row); i += 4 {
			r, g, b := int(row[i]), int(row[i+1]), int(row[i+2])
			if abs(r-g) > greyTolerance || abs(g-b) > greyTolerance || abs(r-b) > greyTolerance {
				return nil, false
			}
		}
	}
	g := image.NewGray(image.Rect(0, 0, w, h))
	for y := 0; y < h; y++ {
		row := m.Pix[y*m.Stride : y*m.Stride+w*4]
		out := g.Pix[y*g.Stride : y*g.Stride+w]
		for x := range out {
			out[x] = luma(row[x*4], row[x*4+1], row[x*4+2])
		}
	}
	return g, true
}

// luma is the Rec. 601 luminance of an sRGB pixel, as JPEG uses it.
func luma(r, g, b uint8) uint8 {
	return uint8((19595*uint32(r) + 38470*uint32(g) + 7471*uint32(b) + 1<<15) >> 16)
}

func abs(v int) int {
	if v < 0 {
		return -v
	}
	return v
}
