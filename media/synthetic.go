package media

import (
	"bytes"
	"image"
	"image/jpeg"
	"math"
	"math/rand/v2"
)

// Synthetic12MP returns a 4000×3000 JPEG (quality 92, 4:2:0, as a phone
// camera writes it) for benchmarks and `fieldsync bench`. It is the same on
// every call and every machine: a sky-to-ground gradient, a few soft shapes,
// fine stripes, and pixel noise, so that decoding, scaling and encoding cost
// what they cost on a real photo rather than on a flat colour. Making it
// takes about a second; callers that need it often should keep it.
func Synthetic12MP() []byte {
	return synthetic(4000, 3000, 92)
}

// synthetic draws the Synthetic12MP picture at any size and quality.
func synthetic(w, h, quality int) []byte {
	m := image.NewYCbCr(image.Rect(0, 0, w, h), image.YCbCrSubsampleRatio420)
	rng := rand.New(rand.NewPCG(0x5eed, 0xf1e1d))
	cx, cy, r := float64(w)*0.7, float64(h)*0.25, float64(h)*0.12
	horizon := h * 3 / 5
	for y := 0; y < h; y++ {
		row := m.Y[y*m.YStride : y*m.YStride+w]
		for x := range row {
			var v float64
			if y < horizon { // sky: brighter towards the horizon
				v = 120 + 90*float64(y)/float64(horizon)
			} else { // ground: darker towards the bottom, with furrows
				v = 150 - 80*float64(y-horizon)/float64(h-horizon)
				v += 18 * math.Sin(float64(x)*0.05+float64(y)*0.21)
			}
			if dx, dy := float64(x)-cx, float64(y)-cy; dx*dx+dy*dy < r*r { // the sun
				v = 240
			}
			if x > w/6 && x < w/3 && y > h/3 && y < horizon+h/10 { // a building with windows
				v = 60
				if (x/40)%3 == 1 && (y/60)%2 == 1 {
					v = 200
				}
			}
			v += float64(rng.IntN(17) - 8)
			row[x] = clampByte(v)
		}
	}
	cw, ch := (w+1)/2, (h+1)/2
	for y := 0; y < ch; y++ {
		for x := 0; x < cw; x++ {
			i := y*m.CStride + x
			if y*2 < horizon {
				m.Cb[i] = clampByte(150 + 20*float64(x)/float64(cw) + float64(rng.IntN(5)-2))
				m.Cr[i] = clampByte(115 + float64(rng.IntN(5)-2))
			} else {
				m.Cb[i] = clampByte(105 + float64(rng.IntN(7)-3))
				m.Cr[i] = clampByte(135 + 15*float64(y)/float64(ch) + float64(rng.IntN(7)-3))
			}
		}
	}
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, m, &jpeg.Options{Quality: quality}); err != nil {
		panic("media: encoding the synthetic photo: " + err.Error()) // cannot fail on a bytes.Buffer
	}
	return buf.Bytes()
}

func clampByte(v float64) uint8 {
	switch {
	case v < 0:
		return 0
	case v > 255:
		return 255
	}
	return uint8(v + 0.5)
}
