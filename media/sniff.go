package media

import "bytes"

var (
	jpegMagic = []byte{0xFF, 0xD8, 0xFF}
	pngMagic  = []byte("\x89PNG\r\n\x1a\n")
)

// Sniff returns TypeJPEG or TypePNG when head (the first bytes of a file;
// 8 are enough) starts like a JPEG or a PNG, and "" otherwise. It looks at
// the signature only: a file that sniffs as an image can still be damaged.
func Sniff(head []byte) string {
	switch {
	case bytes.HasPrefix(head, jpegMagic):
		return TypeJPEG
	case bytes.HasPrefix(head, pngMagic):
		return TypePNG
	}
	return ""
}
