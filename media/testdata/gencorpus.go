//go:build ignore

// Gencorpus writes the seed corpora of the media package's fuzz tests:
// tiny valid JPEGs and PNGs of every kind the decoders meet, a few broken
// ones, and JSON forms of strokes. Run it from the module root:
//
//	go run ./media/testdata/gencorpus.go
package main

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"log"
	"os"
	"path/filepath"

	"github.com/fieldsync/fieldsync/media"
)

func main() {
	dir := filepath.Join("media", "testdata", "fuzz")
	colour := image.NewRGBA(image.Rect(0, 0, 12, 8))
	for y := 0; y < 8; y++ {
		for x := 0; x < 12; x++ {
			colour.SetRGBA(x, y, color.RGBA{uint8(x * 20), uint8(y * 30), 200, 255})
		}
	}
	grey := image.NewGray(image.Rect(0, 0, 8, 8))
	for i := range grey.Pix {
		grey.Pix[i] = uint8(i * 4)
	}
	clear := image.NewNRGBA(image.Rect(0, 0, 8, 8))
	clear.SetNRGBA(2, 2, color.NRGBA{0, 0, 0, 255})
	clear.SetNRGBA(3, 3, color.NRGBA{0, 0, 0, 128})
	pal := image.NewPaletted(image.Rect(0, 0, 8, 4), color.Palette{color.White, color.Black, color.RGBA{255, 0, 0, 255}})
	pal.Pix[5], pal.Pix[6] = 1, 2
	deep := image.NewRGBA64(image.Rect(0, 0, 4, 4))
	deep.SetRGBA64(1, 1, color.RGBA64{0x1234, 0x5678, 0x9abc, 0xffff})

	small := jpegOf(colour, 75)
	photos := map[string][]byte{
		"jpeg_colour":        small,
		"jpeg_grey":          jpegOf(grey, 75),
		"jpeg_orientation_6": append(append([]byte{0xFF, 0xD8}, exif(6)...), small[2:]...),
		"png_rgba":           pngOf(colour),
		"png_transparent":    pngOf(clear),
		"png_grey":           pngOf(grey),
		"png_paletted":       pngOf(pal),
		"png_16bit":          pngOf(deep),
		"png_huge_header":    pngHeader(100000, 100000),
		"jpeg_cut":           small[:len(small)/2],
		"not_an_image":       []byte("hello"),
	}
	for name, b := range photos {
		write(dir, "FuzzPreparePhoto", name, b)
	}

	sig, err := media.EncodeSignature([]media.Stroke{{{X: 2, Y: 2}, {X: 30, Y: 12}, {X: 46, Y: 3}}, {{X: 20, Y: 8}}}, 48, 16)
	if err != nil {
		log.Fatal(err)
	}
	ink := image.NewGray(image.Rect(0, 0, 32, 12))
	for i := range ink.Pix {
		ink.Pix[i] = 250
		if i%32 == i/32*2 || i%32 == i/32*2+1 {
			ink.Pix[i] = 20
		}
	}
	for name, b := range map[string][]byte{
		"png_signature":   sig.Data,
		"jpeg_signature":  jpegOf(ink, 80),
		"png_transparent": pngOf(clear),
		"png_blank":       pngOf(image.NewGray(image.Rect(0, 0, 4, 4))),
		"not_an_image":    []byte("GIF89a"),
	} {
		write(dir, "FuzzPrepareSignature", name, b)
	}

	for name, s := range map[string]string{
		"typical":       `{"w":600,"h":200,"strokes":[[[10,20],[14,26],[19,31.5],[25,33]],[[300,100]],[[40,150],[560,152]]]}`,
		"empty":         `{"w":600,"h":200,"strokes":[]}`,
		"edge_of_pad":   `{"w":10,"h":10,"strokes":[[[-1,-1],[11,11]]]}`,
		"unknown_key":   `{"w":600,"h":200,"strokes":[],"x":1}`,
		"duplicate":     `{"w":600,"h":200,"h":100,"strokes":[]}`,
		"nulls":         `{"w":600,"h":null,"strokes":[[null,[1,null]]]}`,
		"wrong_shape":   `{"w":600,"h":200,"strokes":[[[1,2,3]],[[]],[]]}`,
		"big_numbers":   `{"w":1e3,"h":2e2,"strokes":[[[1e308,-1e308]]]}`,
		"trailing":      `{"w":600,"h":200,"strokes":[]}[]`,
		"not_an_object": `[1,2]`,
	} {
		write(dir, "FuzzDecodeStrokes", name, []byte(s))
	}
}

func jpegOf(m image.Image, q int) []byte {
	var b bytes.Buffer
	if err := jpeg.Encode(&b, m, &jpeg.Options{Quality: q}); err != nil {
		log.Fatal(err)
	}
	return b.Bytes()
}

func pngOf(m image.Image) []byte {
	var b bytes.Buffer
	if err := png.Encode(&b, m); err != nil {
		log.Fatal(err)
	}
	return b.Bytes()
}

// exif returns an APP1 Exif segment holding only Orientation o.
func exif(o uint16) []byte {
	t := []byte("II\x2a\x00\x08\x00\x00\x00\x01\x00")
	t = binary.LittleEndian.AppendUint16(t, 0x0112)
	t = binary.LittleEndian.AppendUint16(t, 3)
	t = binary.LittleEndian.AppendUint32(t, 1)
	t = binary.LittleEndian.AppendUint16(t, o)
	t = append(t, 0, 0, 0, 0, 0, 0)
	body := append([]byte("Exif\x00\x00"), t...)
	seg := []byte{0xFF, 0xE1}
	seg = binary.BigEndian.AppendUint16(seg, uint16(len(body)+2))
	return append(seg, body...)
}

// pngHeader returns a PNG signature and IHDR claiming w×h RGBA pixels.
func pngHeader(w, h uint32) []byte {
	ihdr := []byte("IHDR")
	ihdr = binary.BigEndian.AppendUint32(ihdr, w)
	ihdr = binary.BigEndian.AppendUint32(ihdr, h)
	ihdr = append(ihdr, 8, 6, 0, 0, 0)
	b := binary.BigEndian.AppendUint32([]byte("\x89PNG\r\n\x1a\n"), 13)
	b = append(b, ihdr...)
	return binary.BigEndian.AppendUint32(b, crc32.ChecksumIEEE(ihdr))
}

// write stores b as one corpus entry in the file format of go test fuzz.
func write(dir, target, name string, b []byte) {
	if len(b) > 10<<10 {
		log.Fatalf("%s/%s is %d bytes; seeds stay under 10 KiB", target, name, len(b))
	}
	d := filepath.Join(dir, target)
	if err := os.MkdirAll(d, 0o755); err != nil {
		log.Fatal(err)
	}
	entry := fmt.Sprintf("go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(filepath.Join(d, name), []byte(entry), 0o644); err != nil {
		log.Fatal(err)
	}
}
