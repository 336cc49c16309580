package protocol

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/fieldsync/fieldsync"
)

// Cursor is a device's position in the server's change feed. It carries
// the server's epoch and a tag of the last change seen, so a device can
// tell a server restored from a backup (or another server) from the one
// it synced with, instead of trusting a position that means something
// else there.
type Cursor struct {
	Epoch string
	Seq   int64
	Tag   string // short tag of the change at Seq; may be empty
}

var (
	epochRE = regexp.MustCompile(`^[0-9a-f]{8,64}$`)
	tagRE   = regexp.MustCompile(`^[0-9a-f]{0,16}$`)
)

// String encodes the cursor as "1.<epoch>.<seq>.<tag>"; the zero cursor
// is "".
func (c Cursor) String() string {
	if c.Epoch == "" {
		return ""
	}
	return fmt.Sprintf("1.%s.%d.%s", c.Epoch, c.Seq, c.Tag)
}

// ParseCursor decodes a cursor string. The empty string is the start of
// the feed.
func ParseCursor(s string) (Cursor, error) {
	if s == "" {
		return Cursor{}, nil
	}
	bad := fieldsync.Errorf(fieldsync.EInvalidRequest, "cursor: not a cursor this server made")
	if len(s) > 120 {
		return Cursor{}, bad
	}
	parts := strings.Split(s, ".")
	if len(parts) != 4 || parts[0] != "1" || !epochRE.MatchString(parts[1]) || !tagRE.MatchString(parts[3]) {
		return Cursor{}, bad
	}
	seq, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || seq < 0 || strconv.FormatInt(seq, 10) != parts[2] {
		return Cursor{}, bad
	}
	return Cursor{Epoch: parts[1], Seq: seq, Tag: parts[3]}, nil
}
