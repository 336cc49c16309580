package linkemu

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/Shopify/toxiproxy/v2/toxics"
)

// Loss describes packet loss on a link as TCP makes it felt: no byte is
// ever lost (TCP sends it again), but the stream stalls. The data of each
// direction is cut into segments of Segment bytes; each segment is lost
// with probability Probability, independently, and a lost segment holds
// back it and everything after it in its direction by RTO, the time TCP
// waits before it sends the segment again. Losses are not recovered
// faster by duplicate acknowledgements, and the sender's window is not
// reduced after a loss: the model charges a timeout, no more, no less.
type Loss struct {
	Probability float64       // per segment, 0 to 1
	Segment     int           // bytes per segment (default 1460, a TCP segment on Ethernet)
	RTO         time.Duration // stall per lost segment (default 1 s, RFC 6298's minimum)
	Seed        uint64        // the random sequence; the same seed replays the same losses per direction
}

// LossCounter counts the stalls that a link's loss caused.
type LossCounter struct {
	up, down *lossToxic
}

// Stalls returns the lost segments so far, both directions.
func (c *LossCounter) Stalls() int64 { return c.up.stalls.Load() + c.down.stalls.Load() }

const lossType = "fieldsync_loss"

var registerLoss sync.Once

// AddLoss adds loss to both directions of the link. It is placed after
// the rate cap and the latency, so a stall delays what the cap let
// through; the cap does not catch up afterwards.
func (l *Link) AddLoss(loss Loss) (*LossCounter, error) {
	if loss.Probability < 0 || loss.Probability > 1 {
		return nil, errors.New("linkemu: loss probability must be between 0 and 1")
	}
	if loss.Segment < 0 || loss.RTO < 0 {
		return nil, errors.New("linkemu: loss segment and RTO cannot be negative")
	}
	if loss.Segment == 0 {
		loss.Segment = 1460
	}
	if loss.RTO == 0 {
		loss.RTO = time.Second
	}
	registerLoss.Do(func() { toxics.Register(lossType, new(lossToxic)) })
	c := &LossCounter{}
	for i, dir := range []string{"upstream", "downstream"} {
		attrs := fmt.Sprintf(`{"probability":%g,"segment":%d,"rto_ms":%d,"seed":%d}`,
			loss.Probability, loss.Segment, loss.RTO.Milliseconds(), loss.Seed+uint64(i))
		w, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(
			fmt.Sprintf(`{"type":%q,"stream":%q,"name":"loss_%s","attributes":%s}`, lossType, dir, dir, attrs)))
		if err != nil {
			return nil, fmt.Errorf("linkemu: %w", err)
		}
		t := w.Toxic.(*lossToxic)
		if dir == "upstream" {
			c.up = t
		} else {
			c.down = t
		}
	}
	return c, nil
}

// lossToxic stalls its direction by an RTO for each lost segment. One
// toxic serves every connection of its direction; the random source is
// shared under a lock.
type lossToxic struct {
	Probability float64 `json:"probability"`
	Segment     int     `json:"segment"`
	RTOMillis   int64   `json:"rto_ms"`
	Seed        uint64  `json:"seed"`

	once   sync.Once
	mu     sync.Mutex
	rnd    *rand.Rand
	stalls atomic.Int64
}

// lost returns how many of the segments of n bytes are lost.
func (t *lossToxic) lost(n int) int {
	t.once.Do(func() { t.rnd = rand.New(rand.NewPCG(t.Seed, 0x1055)) })
	segs := (n + t.Segment - 1) / t.Segment
	t.mu.Lock()
	defer t.mu.Unlock()
	k := 0
	for range segs {
		if t.rnd.Float64() < t.Probability {
			k++
		}
	}
	return k
}

// Pipe relays chunks, holding each back by an RTO per lost segment.
func (t *lossToxic) Pipe(stub *toxics.ToxicStub) {
	rto := time.Duration(t.RTOMillis) * time.Millisecond
	for {
		select {
		case <-stub.Interrupt:
			return
		case p := <-stub.Input:
			if p == nil {
				stub.Close()
				return
			}
			if k := t.lost(len(p.Data)); k > 0 {
				t.stalls.Add(int64(k))
				timer := time.NewTimer(time.Duration(k) * rto)
				select {
				case <-timer.C:
				case <-stub.Interrupt:
					timer.Stop()
					_ = stub.WriteOutput(p, 5*time.Second)
					return
				}
			}
			select {
			case stub.Output <- p:
			case <-stub.Interrupt:
				_ = stub.WriteOutput(p, 5*time.Second)
				return
			}
		}
	}
}
